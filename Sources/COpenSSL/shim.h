// OpenSSL's libssl and libcrypto, with shims for the macros the importer cannot see.
#ifndef APPROVALD_COPENSSL_SHIM_H
#define APPROVALD_COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/sha.h>
#include <openssl/param_build.h>
#include <string.h>

static inline int approvald_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}
static inline int approvald_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}
static inline long approvald_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}
static inline long approvald_BIO_get_mem_data(BIO *bio, char **data) {
    return BIO_get_mem_data(bio, data);
}
static inline void approvald_OPENSSL_free(void *pointer) {
    OPENSSL_free(pointer);
}
enum { approvald_TLS1_2_VERSION = TLS1_2_VERSION };
/// `EVP_EC_gen` is a variadic macro.
static inline EVP_PKEY *approvald_generate_p256_key(void) {
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}
/// `EVP_RSA_gen` is a variadic macro.
static inline EVP_PKEY *approvald_generate_rsa_key(unsigned int bits) {
    return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
}
/// An RSA public key from its big-endian modulus and public exponent (a JWK's `n` and `e`); NULL when they are
/// not one.
static inline EVP_PKEY *approvald_rsa_public_key(
    const unsigned char *modulus, size_t modulus_length, const unsigned char *exponent, size_t exponent_length) {
    BIGNUM *n = BN_bin2bn(modulus, (int)modulus_length, NULL);
    BIGNUM *e = BN_bin2bn(exponent, (int)exponent_length, NULL);
    OSSL_PARAM_BLD *builder = OSSL_PARAM_BLD_new();
    EVP_PKEY_CTX *context = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    OSSL_PARAM *parameters = NULL;
    EVP_PKEY *key = NULL;
    if (n && e && builder && context && OSSL_PARAM_BLD_push_BN(builder, "n", n)
        && OSSL_PARAM_BLD_push_BN(builder, "e", e) && (parameters = OSSL_PARAM_BLD_to_param(builder)) != NULL
        && EVP_PKEY_fromdata_init(context) == 1
        && EVP_PKEY_fromdata(context, &key, EVP_PKEY_PUBLIC_KEY, parameters) != 1) {
        key = NULL;
    }
    OSSL_PARAM_free(parameters);
    OSSL_PARAM_BLD_free(builder);
    EVP_PKEY_CTX_free(context);
    BN_free(n);
    BN_free(e);
    return key;
}
/// `BN_num_bytes` is a macro.
static inline int approvald_BN_num_bytes(const BIGNUM *number) {
    return BN_num_bytes(number);
}
/// Options every context gets: no TLS compression (CRIME), no renegotiation.
static inline void approvald_SSL_CTX_harden(SSL_CTX *ctx) {
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
}

/// Drains the thread's OpenSSL error queue into `out` as "error; error; ..."; returns how many there were.
static inline int approvald_drain_errors(char *out, size_t capacity) {
    int count = 0;
    size_t used = 0;
    unsigned long code;
    if (capacity > 0) out[0] = 0;
    while ((code = ERR_get_error()) != 0) {
        if (used + 4 < capacity) {
            if (count > 0) { out[used++] = ';'; out[used++] = ' '; out[used] = 0; }
            ERR_error_string_n(code, out + used, capacity - used);
            used += strlen(out + used);
        }
        count++;
    }
    return count;
}
#endif
