// The libcrypto calls of a sign-in, each timed alone (CPU time of this process, one core): what a device key's parse,
// a signature check with a parsed key, and the IdP's and the callback's HMACs cost beside each other. Built and run
// by bench/crypto/run; the calls are those of Sources/Crypto (P256.swift, Digest.swift).
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void report(const char *what, double start, int count) {
    printf("%-58s %8.2f µs\n", what, (cpu_seconds() - start) / count * 1e6);
}

// The uncompressed P-256 SPKI header (P256PublicKey.uncompressedSPKIHeader).
static const int spki_header_length = 26;

// P256PublicKey's fast path: a key copying the curve from a template, its point set from the SPKI's last 65 bytes.
static EVP_PKEY *parse_point(EVP_PKEY *template, const unsigned char *spki) {
    EVP_PKEY *key = EVP_PKEY_new();
    if (EVP_PKEY_copy_parameters(key, template) != 1
        || EVP_PKEY_set1_encoded_public_key(key, spki + spki_header_length, 65) != 1) {
        fprintf(stderr, "parse failed\n");
        exit(1);
    }
    return key;
}

// verifySHA256Signature: a digest-verify context per check.
static int verify(EVP_PKEY *key, const unsigned char *signature, size_t signature_length, const unsigned char *message,
    size_t message_length) {
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    int valid = EVP_DigestVerifyInit(context, NULL, EVP_sha256(), NULL, key) == 1
        && EVP_DigestVerify(context, signature, signature_length, message, message_length) == 1;
    EVP_MD_CTX_free(context);
    return valid;
}

int main(int argc, char **argv) {
    int count = argc > 1 ? atoi(argv[1]) : 2000;
    // A decision string's length (Protocol/DecisionString.swift) and a create's body (about 300 bytes).
    unsigned char decision[180], create[300];
    memset(decision, 'd', sizeof decision);
    memset(create, 'c', sizeof create);

    EVP_PKEY *private_key = EVP_EC_gen("P-256");
    unsigned char *spki = NULL;
    if (i2d_PUBKEY(private_key, &spki) != 91) { fprintf(stderr, "unexpected SPKI\n"); return 1; }
    unsigned char signature[80];
    size_t signature_length = sizeof signature;
    EVP_MD_CTX *signing = EVP_MD_CTX_new();
    EVP_DigestSignInit(signing, NULL, EVP_sha256(), NULL, private_key);
    EVP_DigestSign(signing, signature, &signature_length, decision, sizeof decision);
    EVP_MD_CTX_free(signing);

    double start = cpu_seconds();
    for (int i = 0; i < count; i++) {
        const unsigned char *cursor = spki;
        EVP_PKEY_free(d2i_PUBKEY(NULL, &cursor, 91));
    }
    report("parse a device key, OpenSSL's DER decoder (d2i_PUBKEY)", start, count);

    start = cpu_seconds();
    for (int i = 0; i < count; i++) EVP_PKEY_free(parse_point(private_key, spki));
    report("parse a device key, the point into a copy of the curve", start, count);

    EVP_PKEY *parsed = parse_point(private_key, spki);
    int valid = 0;
    start = cpu_seconds();
    for (int i = 0; i < count; i++) valid += verify(parsed, signature, signature_length, decision, sizeof decision);
    report("verify a decision with a parsed key (the floor's work)", start, count);

    start = cpu_seconds();
    for (int i = 0; i < count; i++) {
        EVP_PKEY *key = parse_point(private_key, spki);
        valid += verify(key, signature, signature_length, decision, sizeof decision);
        EVP_PKEY_free(key);
    }
    report("parse the key, then verify (each request before 0.21.0)", start, count);
    if (valid != 2 * count) { fprintf(stderr, "a signature did not verify\n"); return 1; }

    unsigned char secret[32], mac[32];
    unsigned int mac_length;
    memset(secret, 's', sizeof secret);
    int hmacs = count * 20;
    start = cpu_seconds();
    for (int i = 0; i < hmacs; i++) HMAC(EVP_sha256(), secret, sizeof secret, create, sizeof create, mac, &mac_length);
    report("HMAC-SHA256 of a create, one-shot HMAC()", start, hmacs);

    // HMACSHA256.Key: the padded key's two SHA-256 states prepared once, copied per MAC.
    unsigned char block[64] = { 0 }, padded[64];
    memcpy(block, secret, sizeof secret);
    EVP_MD_CTX *inner = EVP_MD_CTX_new(), *outer = EVP_MD_CTX_new(), *work = EVP_MD_CTX_new();
    for (int i = 0; i < 64; i++) padded[i] = block[i] ^ 0x36;
    EVP_DigestInit_ex(inner, EVP_sha256(), NULL);
    EVP_DigestUpdate(inner, padded, 64);
    for (int i = 0; i < 64; i++) padded[i] = block[i] ^ 0x5c;
    EVP_DigestInit_ex(outer, EVP_sha256(), NULL);
    EVP_DigestUpdate(outer, padded, 64);
    start = cpu_seconds();
    for (int i = 0; i < hmacs; i++) {
        EVP_MD_CTX_copy_ex(work, inner);
        EVP_DigestUpdate(work, create, sizeof create);
        EVP_DigestFinal_ex(work, mac, &mac_length);
        EVP_MD_CTX_copy_ex(work, outer);
        EVP_DigestUpdate(work, mac, sizeof mac);
        EVP_DigestFinal_ex(work, mac, &mac_length);
    }
    report("HMAC-SHA256 of a create, prepared key (HMACSHA256.Key)", start, hmacs);

    start = cpu_seconds();
    for (int i = 0; i < hmacs; i++) SHA256(create, sizeof create, mac);
    report("SHA-256 of a create", start, hmacs);
    return 0;
}
