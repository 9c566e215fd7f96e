/* s3_sign.c: AWS Signature Version 4 (see s3_sign.h).  Byte-exact against
 * AWS's published test suite (tests/unit/test_s3sign.c). */
#include "store/s3_sign.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/util.h"

#define SIGN_BUF 8192

static void hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

void s3_sha256_hex(const void *data, size_t len, char out[S3_SHA256_HEX])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	hex(md, mdlen, out);
}

static int unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

int s3_uri_encode(const char *src, int keep_slash, char *out, size_t len)
{
	static const char digits[] = "0123456789ABCDEF";
	size_t o = strlen(out);

	for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
		if (unreserved(*p) || (keep_slash && *p == '/')) {
			if (o + 1 >= len)
				return -ENAMETOOLONG;
			out[o++] = (char)*p;
			continue;
		}
		if (o + 3 >= len)
			return -ENAMETOOLONG;
		out[o++] = '%';
		out[o++] = digits[*p >> 4];
		out[o++] = digits[*p & 15];
	}
	out[o] = '\0';
	return 0;
}

void s3_amz_date(long long t, char out[S3_AMZ_DATE])
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, S3_AMZ_DATE, "%Y%m%dT%H%M%SZ", &tm);
}

/* A bounded string builder: appends until it overflows, then remembers it. */
struct sbuf {
	char *p;
	size_t len, cap;
	int overflow;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->overflow || b->len + n >= b->cap) {
		b->overflow = 1;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_lower(struct sbuf *b, const char *s)
{
	for (; *s; s++) {
		char c = *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s;
		sb_add(b, &c, 1);
	}
}

/* A header value as signed: no leading or trailing spaces, and each inner run
 * of spaces (or tabs) as one space. */
static void sb_trimmed(struct sbuf *b, const char *v)
{
	int space = 0;

	while (*v == ' ' || *v == '\t')
		v++;
	for (; *v; v++) {
		if (*v == ' ' || *v == '\t') {
			space = 1;
			continue;
		}
		if (space)
			sb_add(b, " ", 1);
		space = 0;
		sb_add(b, v, 1);
	}
}

static int hdr_cmp(const void *a, const void *b)
{
	const struct s3_hdr *x = *(const struct s3_hdr *const *)a;
	const struct s3_hdr *y = *(const struct s3_hdr *const *)b;

	return strcasecmp(x->name, y->name);
}

/* Compare "name=value" parameters by name, then by value. */
static int param_cmp(const void *a, const void *b)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	size_t nx = strcspn(x, "="), ny = strcspn(y, "=");
	int c = strncmp(x, y, MIN(nx, ny));

	if (c)
		return c;
	if (nx != ny)
		return nx < ny ? -1 : 1;
	return strcmp(x + nx, y + ny);
}

static int add_query(struct sbuf *b, const char *query)
{
	char copy[SIGN_BUF];
	char *params[64];
	size_t n = 0;
	char *save = NULL;

	if (!query || !*query)
		return 0;
	if (strlen(query) >= sizeof(copy))
		return -ENAMETOOLONG;
	strcpy(copy, query);
	for (char *p = strtok_r(copy, "&", &save); p; p = strtok_r(NULL, "&", &save)) {
		if (n == ARRAY_SIZE(params))
			return -EINVAL;
		params[n++] = p;
	}
	qsort(params, n, sizeof(params[0]), param_cmp);
	for (size_t i = 0; i < n; i++) {
		if (i)
			sb_add(b, "&", 1);
		sb_str(b, params[i]);
		if (!strchr(params[i], '='))
			sb_add(b, "=", 1);
	}
	return 0;
}

int s3_canonical_request(const struct s3_sign_req *r, char *out, size_t len)
{
	const struct s3_hdr *sorted[S3_SIGN_MAX_HDRS];
	struct sbuf b = { .p = out, .cap = len };
	int rc;

	if (r->nhdrs > S3_SIGN_MAX_HDRS)
		return -EINVAL;
	if (len)
		out[0] = '\0';
	for (size_t i = 0; i < r->nhdrs; i++)
		sorted[i] = &r->hdrs[i];
	qsort(sorted, r->nhdrs, sizeof(sorted[0]), hdr_cmp);

	sb_str(&b, r->method);
	sb_add(&b, "\n", 1);
	sb_str(&b, r->path);
	sb_add(&b, "\n", 1);
	rc = add_query(&b, r->query);
	if (rc < 0)
		return rc;
	sb_add(&b, "\n", 1);
	for (size_t i = 0; i < r->nhdrs; i++) {
		sb_lower(&b, sorted[i]->name);
		sb_add(&b, ":", 1);
		sb_trimmed(&b, sorted[i]->value);
		sb_add(&b, "\n", 1);
	}
	sb_add(&b, "\n", 1);
	for (size_t i = 0; i < r->nhdrs; i++) {
		if (i)
			sb_add(&b, ";", 1);
		sb_lower(&b, sorted[i]->name);
	}
	sb_add(&b, "\n", 1);
	sb_str(&b, r->payload_hash);
	return b.overflow ? -ENAMETOOLONG : 0;
}

static int signed_headers(const struct s3_sign_req *r, struct sbuf *b)
{
	const struct s3_hdr *sorted[S3_SIGN_MAX_HDRS];

	for (size_t i = 0; i < r->nhdrs; i++)
		sorted[i] = &r->hdrs[i];
	qsort(sorted, r->nhdrs, sizeof(sorted[0]), hdr_cmp);
	for (size_t i = 0; i < r->nhdrs; i++) {
		if (i)
			sb_add(b, ";", 1);
		sb_lower(b, sorted[i]->name);
	}
	return b->overflow ? -ENAMETOOLONG : 0;
}

static void hmac(const void *key, size_t keylen, const char *msg, unsigned char out[32])
{
	unsigned int n = 32;

	HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &n);
}

int s3_sign(const struct s3_sign_req *r, const char *amz_date, const struct s3_sign_key *k,
	    char *out, size_t len)
{
	CLEANUP_FREE char *creq = malloc(SIGN_BUF);
	char creq_hash[S3_SHA256_HEX], day[9], scope[256], sts[512], sig[S3_SHA256_HEX];
	char hdrs[1024], secret[256];
	unsigned char kd[32], kr[32], ks[32], kk[32], s[32];
	struct sbuf hb = { .p = hdrs, .cap = sizeof(hdrs) };
	int rc, n;

	if (!creq)
		return -ENOMEM;
	rc = s3_canonical_request(r, creq, SIGN_BUF);
	if (rc < 0)
		return rc;
	rc = signed_headers(r, &hb);
	if (rc < 0)
		return rc;
	s3_sha256_hex(creq, strlen(creq), creq_hash);
	snprintf(day, sizeof(day), "%.8s", amz_date);
	n = snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", day, k->region, k->service);
	if (n < 0 || (size_t)n >= sizeof(scope))
		return -ENAMETOOLONG;
	snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, creq_hash);

	n = snprintf(secret, sizeof(secret), "AWS4%s", k->secret_key);
	if (n < 0 || (size_t)n >= sizeof(secret))
		return -ENAMETOOLONG;
	hmac(secret, (size_t)n, day, kd);
	hmac(kd, sizeof(kd), k->region, kr);
	hmac(kr, sizeof(kr), k->service, ks);
	hmac(ks, sizeof(ks), "aws4_request", kk);
	hmac(kk, sizeof(kk), sts, s);
	hex(s, sizeof(s), sig);
	OPENSSL_cleanse(secret, sizeof(secret));
	OPENSSL_cleanse(kk, sizeof(kk));

	n = snprintf(out, len, "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
		     k->access_key, scope, hdrs, sig);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}
