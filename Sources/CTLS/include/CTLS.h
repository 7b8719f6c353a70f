#ifndef SPIRIT_CTLS_H
#define SPIRIT_CTLS_H
#include <stddef.h>

// A TLS client over mbedTLS for Net's HTTP client, on a socket that is
// already connected: TLS 1.2 or later, SNI, the peer's chain checked
// against a CA bundle (PEM) and its name against the host. Every call
// is non-blocking: SPIRIT_TLS_WANT_READ or _WANT_WRITE says what to poll
// for before calling again; SPIRIT_TLS_FAILED leaves the reason in the
// session (spirit_tls_error).

typedef struct spirit_tls spirit_tls;

enum {
    SPIRIT_TLS_WANT_READ = -2,
    SPIRIT_TLS_WANT_WRITE = -3,
    SPIRIT_TLS_FAILED = -4,
    /// The peer's certificate did not verify (the reason in spirit_tls_error).
    SPIRIT_TLS_UNTRUSTED = -5,
};

/// A session on `fd` for `host` (SNI and the name checked), trusting the
/// certificates in `ca_file`. NULL on failure, the reason in `error`.
spirit_tls *spirit_tls_open(int fd, const char *host, const char *ca_file, char *error, size_t error_size);
/// 0 once the handshake is done, or a SPIRIT_TLS_* code.
int spirit_tls_handshake(spirit_tls *tls);
/// Bytes read (0 at the end of the stream), or a SPIRIT_TLS_* code.
long spirit_tls_read(spirit_tls *tls, void *buffer, size_t size);
/// Bytes written, or a SPIRIT_TLS_* code.
long spirit_tls_write(spirit_tls *tls, const void *buffer, size_t size);
/// Why the last call failed: "certificate verify failed for HOST: REASON" or mbedTLS's error text.
const char *spirit_tls_error(const spirit_tls *tls);
/// Sends close_notify (best effort) and frees the session; the socket stays open.
void spirit_tls_close(spirit_tls *tls);

#endif
