"""The plain-text HTTP server both backends (backend.py, nacos_backend.py) run."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve_text(ip, port, body_for_port):
    """Listens on ip:port (0: any free port) in a daemon thread; GET (any path) answers
    body_for_port(bound port) as text/plain, HTTP/1.1 keep-alive. Returns the server."""
    body = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body[0])))
            self.end_headers()
            self.wfile.write(body[0])

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer((ip, port), Handler)
    httpd.daemon_threads = True
    body.append(body_for_port(httpd.server_address[1]))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd
