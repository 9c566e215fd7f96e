/* s3_sign.h: AWS Signature Version 4 for the S3 backend: the canonical
 * request, the string to sign, the signing key and the Authorization header
 * value, computed with OpenSSL's HMAC and SHA-256.  Also the URI encoding and
 * payload hashing that the signature depends on.
 *
 * The caller supplies the request exactly as it will be sent: the path
 * already URI-encoded (S3 does not encode it a second time), the query string
 * with names and values already URI-encoded (the signer sorts its
 * parameters), and every header to be signed (at least host and x-amz-date).
 *
 * Locking: none; every function is pure and thread-safe. */
#ifndef ZEROFS_S3_SIGN_H
#define ZEROFS_S3_SIGN_H

#include <stddef.h>

#define S3_SHA256_HEX 65 /* 64 hex digits and a NUL */
#define S3_AMZ_DATE 17 /* "YYYYMMDDTHHMMSSZ" and a NUL */
/* The SHA-256 of an empty payload, in hex. */
#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct s3_hdr {
	const char *name; /* any case; signed in lower case */
	const char *value; /* trimmed and with inner runs of spaces collapsed when signed */
};

struct s3_sign_req {
	const char *method; /* "GET", "PUT", ... */
	const char *path; /* URI-encoded absolute path, "/" at least */
	const char *query; /* "a=1&b=2" already encoded, or NULL or "" */
	const struct s3_hdr *hdrs; /* the headers to sign, names unique */
	size_t nhdrs;
	const char *payload_hash; /* hex SHA-256 of the body */
};

struct s3_sign_key {
	const char *access_key;
	const char *secret_key;
	const char *region; /* "us-east-1" */
	const char *service; /* "s3" */
};

/* Hex SHA-256 of data. */
void s3_sha256_hex(const void *data, size_t len, char out[S3_SHA256_HEX]);

/* Append the URI encoding of src (unreserved characters as they are, '/' as
 * it is when keep_slash is set, every other byte as %XX) to out, which holds
 * len bytes.  0, or -ENAMETOOLONG when it does not fit. */
int s3_uri_encode(const char *src, int keep_slash, char *out, size_t len);

/* Format the time t (seconds since the epoch) as an x-amz-date value. */
void s3_amz_date(long long t, char out[S3_AMZ_DATE]);

/* Write the canonical request of r into out (len bytes).  0, -ENAMETOOLONG
 * when it does not fit, -EINVAL for more than S3_SIGN_MAX_HDRS headers. */
#define S3_SIGN_MAX_HDRS 16
int s3_canonical_request(const struct s3_sign_req *r, char *out, size_t len);

/* Write the Authorization header value for r, signed at amz_date with k,
 * into out (len bytes).  0 or -ENAMETOOLONG / -EINVAL / -ENOMEM. */
int s3_sign(const struct s3_sign_req *r, const char *amz_date, const struct s3_sign_key *k,
	    char *out, size_t len);

#endif
