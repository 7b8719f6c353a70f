// The TLS client under Net's HTTP client (see CTLS.h), over mbedTLS,
// which links statically from Debian's libmbedtls-dev. The socket is
// read and written with MSG_DONTWAIT, so mbedTLS never blocks: Swift
// polls with its own idle timeout and speed floor, as over plain TCP.
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "CTLS.h"

struct spirit_tls {
    int fd;
    mbedtls_ssl_context ssl;
    mbedtls_ssl_config config;
    mbedtls_x509_crt ca;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    char host[256];
    char error[320];
};

static int send_nonblocking(void *context, const unsigned char *buffer, size_t size) {
    spirit_tls *tls = context;
    for (;;) {
        ssize_t n = send(tls->fd, buffer, size, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0) return (int)n;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return MBEDTLS_ERR_SSL_WANT_WRITE;
        return errno == EPIPE || errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_SEND_FAILED;
    }
}

static int receive_nonblocking(void *context, unsigned char *buffer, size_t size) {
    spirit_tls *tls = context;
    for (;;) {
        ssize_t n = recv(tls->fd, buffer, size, MSG_DONTWAIT);
        if (n >= 0) return (int)n;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return MBEDTLS_ERR_SSL_WANT_READ;
        return errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_RECV_FAILED;
    }
}

static void say_mbedtls(spirit_tls *tls, const char *what, int code) {
    char text[200];
    mbedtls_strerror(code, text, sizeof text);
    snprintf(tls->error, sizeof tls->error, "%s: %s (-0x%04x)", what, text, (unsigned)-code);
}

// The verification flags in a few words: the reasons a user can act on
// first (mbedTLS's own text for the rest).
static void say_verify(spirit_tls *tls, uint32_t flags) {
    char reasons[240] = "";
    const struct { uint32_t flag; const char *text; } known[] = {
        { MBEDTLS_X509_BADCERT_EXPIRED, "expired" },
        { MBEDTLS_X509_BADCERT_FUTURE, "not yet valid (is the clock right?)" },
        { MBEDTLS_X509_BADCERT_CN_MISMATCH, "the certificate is not for this host name" },
        { MBEDTLS_X509_BADCERT_NOT_TRUSTED, "not signed by a known CA" },
        { MBEDTLS_X509_BADCERT_REVOKED, "revoked" },
    };
    uint32_t rest = flags;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (!(flags & known[i].flag)) continue;
        rest &= ~known[i].flag;
        if (reasons[0]) strncat(reasons, ", ", sizeof reasons - strlen(reasons) - 1);
        strncat(reasons, known[i].text, sizeof reasons - strlen(reasons) - 1);
    }
    if (rest || !reasons[0]) {
        char info[200];
        int n = mbedtls_x509_crt_verify_info(info, sizeof info, "", rest ? rest : flags);
        for (int i = 0; i < n; i++) if (info[i] == '\n') info[i] = i == n - 1 ? 0 : ';';
        if (reasons[0]) strncat(reasons, ", ", sizeof reasons - strlen(reasons) - 1);
        strncat(reasons, info, sizeof reasons - strlen(reasons) - 1);
    }
    snprintf(tls->error, sizeof tls->error, "certificate verify failed for %s: %s", tls->host, reasons);
}

// The host as an IP address (crom.http=https://10.0.2.2/), in `address`:
// its length, or 0 for a name.
static size_t ip_address(const char *host, unsigned char address[16]) {
    if (inet_pton(AF_INET, host, address) == 1) return 4;
    if (inet_pton(AF_INET6, host, address) == 1) return 16;
    return 0;
}

// mbedTLS 2.28 matches a host name against the certificate's DNS names and
// CN only; an IP address is matched here against the iPAddress entries of
// the subjectAltName (and is not sent as SNI, which RFC 6066 keeps for names).
static int verify_ip_address(void *context, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
    spirit_tls *tls = context;
    unsigned char address[16];
    size_t length = ip_address(tls->host, address);
    if (depth != 0 || length == 0) return 0;
    for (const mbedtls_x509_sequence *name = &crt->subject_alt_names; name; name = name->next) {
        if (name->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && name->buf.len == length &&
            memcmp(name->buf.p, address, length) == 0) {
            return 0;
        }
    }
    *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
}

static int failed(spirit_tls *tls, const char *what, int code) {
    if (code == MBEDTLS_ERR_SSL_WANT_READ) return SPIRIT_TLS_WANT_READ;
    if (code == MBEDTLS_ERR_SSL_WANT_WRITE) return SPIRIT_TLS_WANT_WRITE;
    uint32_t flags = mbedtls_ssl_get_verify_result(&tls->ssl);
    if (code == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags != 0 && flags != (uint32_t)-1) {
        say_verify(tls, flags);
        return SPIRIT_TLS_UNTRUSTED;
    } else {
        say_mbedtls(tls, what, code);
    }
    return SPIRIT_TLS_FAILED;
}

spirit_tls *spirit_tls_open(int fd, const char *host, const char *ca_file, char *error, size_t error_size) {
    spirit_tls *tls = calloc(1, sizeof *tls);
    if (!tls) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    tls->fd = fd;
    snprintf(tls->host, sizeof tls->host, "%s", host);
    mbedtls_ssl_init(&tls->ssl);
    mbedtls_ssl_config_init(&tls->config);
    mbedtls_x509_crt_init(&tls->ca);
    mbedtls_entropy_init(&tls->entropy);
    mbedtls_ctr_drbg_init(&tls->drbg);

    int rc;
    static const unsigned char personal[] = "crom-spirit";
    if ((rc = mbedtls_ctr_drbg_seed(&tls->drbg, mbedtls_entropy_func, &tls->entropy, personal, sizeof personal - 1)) != 0) {
        say_mbedtls(tls, "unable to seed the random generator", rc);
        goto fail;
    }
    // A bundle with a few certificates mbedTLS cannot parse still loads
    // the others (rc > 0); none at all is an error.
    rc = mbedtls_x509_crt_parse_file(&tls->ca, ca_file);
    if (rc < 0 || tls->ca.version == 0) {
        char text[160];
        mbedtls_strerror(rc, text, sizeof text);
        snprintf(tls->error, sizeof tls->error, "unable to read the CA bundle %s: %s", ca_file, rc < 0 ? text : "no certificate in it");
        goto fail;
    }
    if ((rc = mbedtls_ssl_config_defaults(&tls->config, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
        say_mbedtls(tls, "unable to configure TLS", rc);
        goto fail;
    }
    mbedtls_ssl_conf_min_version(&tls->config, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);  // TLS 1.2
    mbedtls_ssl_conf_authmode(&tls->config, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&tls->config, &tls->ca, NULL);
    mbedtls_ssl_conf_verify(&tls->config, verify_ip_address, tls);
    mbedtls_ssl_conf_rng(&tls->config, mbedtls_ctr_drbg_random, &tls->drbg);
    if ((rc = mbedtls_ssl_setup(&tls->ssl, &tls->config)) != 0) {
        say_mbedtls(tls, "unable to set up TLS", rc);
        goto fail;
    }
    // A name is sent as SNI and checked against the certificate's names.
    unsigned char address[16];
    if (ip_address(host, address) == 0 && (rc = mbedtls_ssl_set_hostname(&tls->ssl, host)) != 0) {
        say_mbedtls(tls, "unable to set the host name", rc);
        goto fail;
    }
    mbedtls_ssl_set_bio(&tls->ssl, tls, send_nonblocking, receive_nonblocking, NULL);
    return tls;

fail:
    snprintf(error, error_size, "%s", tls->error);
    spirit_tls_close(tls);
    return NULL;
}

int spirit_tls_handshake(spirit_tls *tls) {
    int rc = mbedtls_ssl_handshake(&tls->ssl);
    return rc == 0 ? 0 : failed(tls, "TLS handshake failed", rc);
}

long spirit_tls_read(spirit_tls *tls, void *buffer, size_t size) {
    int rc = mbedtls_ssl_read(&tls->ssl, buffer, size);
    if (rc >= 0) return rc;
    // The end of the stream, with or without close_notify: HTTP's own
    // framing (Content-Length, the last chunk) tells a cut body.
    if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || rc == MBEDTLS_ERR_SSL_CONN_EOF) return 0;
    return failed(tls, "TLS read failed", rc);
}

long spirit_tls_write(spirit_tls *tls, const void *buffer, size_t size) {
    int rc = mbedtls_ssl_write(&tls->ssl, buffer, size);
    return rc >= 0 ? rc : failed(tls, "TLS write failed", rc);
}

const char *spirit_tls_error(const spirit_tls *tls) { return tls->error; }

void spirit_tls_close(spirit_tls *tls) {
    if (!tls) return;
    mbedtls_ssl_close_notify(&tls->ssl);
    mbedtls_ssl_free(&tls->ssl);
    mbedtls_ssl_config_free(&tls->config);
    mbedtls_x509_crt_free(&tls->ca);
    mbedtls_ctr_drbg_free(&tls->drbg);
    mbedtls_entropy_free(&tls->entropy);
    free(tls);
}
