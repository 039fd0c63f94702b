/* A stand-in TLS library linked into one program, exporting (-rdynamic) the four
 * functions the ssl source probes, with the call shapes real libraries have:
 * SSL_write_ex wraps SSL_write (BoringSSL), SSL_read re-enters itself once, and a
 * write is made from inside a read on the same SSL* (node's handshake callback).
 * Usage: reentry; prints nothing, exits 0. */
#include <stddef.h>
#include <string.h>

static int depth;

__attribute__((noinline)) int SSL_write(void *ssl, const void *buf, int num)
{
    asm volatile("" : : "r"(ssl), "r"(buf) : "memory");
    return num;
}

__attribute__((noinline)) int SSL_write_ex(void *ssl, const void *buf, size_t num, size_t *written)
{
    int n = SSL_write(ssl, buf, (int)num);
    if (n <= 0)
        return 0;
    *written = (size_t)n;
    return 1;
}

__attribute__((noinline)) int SSL_read(void *ssl, void *buf, int num)
{
    if (depth == 0) {
        depth++;
        int n = SSL_read(ssl, buf, num);  /* re-enters itself: one call for the caller */
        depth--;
        char out[16];
        memcpy(out, "nested write", 12);  /* (bytes on the stack: resident for the probe) */
        SSL_write(ssl, out, 12);  /* made inside the read: a call of its own */
        return n;
    }
    memcpy(buf, "inner read data", 15);
    return 15;
}

__attribute__((noinline)) int SSL_read_ex(void *ssl, void *buf, size_t num, size_t *got)
{
    int n = SSL_read(ssl, buf, (int)num);
    if (n <= 0)
        return 0;
    *got = (size_t)n;
    return 1;
}

int main(void)
{
    char buf[64], out[16];
    size_t n;
    void *a = (void *)0x1000, *b = (void *)0x2000;
    memcpy(out, "outer write_ex", 14);
    SSL_write_ex(a, out, 14, &n);
    SSL_read(a, buf, sizeof(buf));
    SSL_read_ex(b, buf, sizeof(buf), &n);  /* SSL_read inside: a re-entry of the wrapper */
    memcpy(out, "plain", 5);
    SSL_write(b, out, 5);
    return 0;
}
