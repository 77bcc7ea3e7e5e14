import socket, sys, threading
port, host, conns, per = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
req = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
ok = [0]
def run():
    s = socket.create_connection(("127.0.0.1", port)); buf = b""
    for _ in range(per):
        s.sendall(req)
        while True:
            i = buf.find(b"\r\n\r\n")
            if i >= 0:
                head = buf[:i].decode("latin1"); n = 0
                for l in head.split("\r\n")[1:]:
                    k, _, v = l.partition(":")
                    if k.strip().lower() == "content-length": n = int(v)
                if len(buf) >= i + 4 + n:
                    assert head.startswith("HTTP/1.1 200"), head
                    buf = buf[i + 4 + n:]; ok[0] += 1; break
            buf += s.recv(65536)
    s.close()
ts = [threading.Thread(target=run) for _ in range(conns)]
[t.start() for t in ts]; [t.join() for t in ts]
print(ok[0])
