/* LD_PRELOAD shim for wrk in bench/run.sh's HTTPS rows (built by run.sh with gcc).
 *
 * wrk keeps one SSL object per connection and, on reconnect, SSL_clear()s it, which keeps
 * the last session: the next handshake offers it (a TLS 1.3 ticket) and the server resumes
 * instead of doing a full handshake. With XIPGATE_BENCH_TLS_NO_RESUME=1 this shim drops
 * that session before each handshake starts, so every handshake is a full one, whatever
 * the server's session settings (the same for nginx and xipgate).
 *
 * wrk sets SSL_VERIFY_NONE, so it ignores the result of checking the server's chain, but
 * OpenSSL still checks it (a signature verification per handshake on the load side's CPU).
 * The shim skips that check; the handshake itself (the server's signature over it
 * included) is unchanged, so the servers do the same work, and the load side less.
 *
 * It also counts the handshakes wrk completed, full and resumed, and notes what the last
 * one negotiated. When XIPGATE_BENCH_TLS_STATS names a file, wrk's exit writes one line:
 *   TLS <full> <resumed> <protocol> <cipher> <group> <alpn or ->
 * Only the calls wrk makes into libssl are interposed; wrk is single-threaded here (-t1).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <openssl/ssl.h>
#include <openssl/objects.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int (*real_connect)(SSL *);
static SSL_CTX *seen_ctx;

static int skip_chain_check(X509_STORE_CTX *store, void *arg) {
    (void)store;
    (void)arg;
    return 1;
}

static unsigned long full, resumed;
static int no_resume = -1;
static char last[256] = "- - - -";

int SSL_connect(SSL *ssl) {
    if (!real_connect) real_connect = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
    if (no_resume < 0) {
        const char *v = getenv("XIPGATE_BENCH_TLS_NO_RESUME");
        no_resume = v && strcmp(v, "1") == 0;
    }
    /* wrk's sockets are non-blocking: SSL_connect is called again until it returns 1.
     * Only before the first call of a handshake may the session be dropped. */
    SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
    if (ctx != seen_ctx) {
        SSL_CTX_set_cert_verify_callback(ctx, skip_chain_check, NULL);
        seen_ctx = ctx;
    }
    if (no_resume && SSL_in_before(ssl)) SSL_set_session(ssl, NULL);
    int r = real_connect(ssl);
    if (r == 1) {
        if (SSL_session_reused(ssl)) resumed++; else full++;
        const unsigned char *alpn = NULL;
        unsigned int alpn_len = 0;
        SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
        int group = SSL_get_negotiated_group(ssl);
        const char *gname = group ? OBJ_nid2sn(group & ~TLSEXT_nid_unknown) : NULL;
        const char *cipher = SSL_get_cipher_name(ssl);
        snprintf(last, sizeof last, "%s %s %s %.*s", SSL_get_version(ssl),
                 cipher ? cipher : "-", gname ? gname : "-",
                 alpn_len ? (int)alpn_len : 1, alpn_len ? (const char *)alpn : "-");
    }
    return r;
}

__attribute__((destructor)) static void report(void) {
    const char *path = getenv("XIPGATE_BENCH_TLS_STATS");
    if (!path) return;
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f, "TLS %lu %lu %s\n", full, resumed, last);
    fclose(f);
}
