/* codec.c: sealing of frames (lz4 + the filesystem's AEAD) and of the data
 * key in the key object (Argon2id).  Everything written here is a stored
 * format: the layouts below must never change without a new version number.
 *
 * Frame (see codec.h):
 *   nonce[24] | AEAD(flags u8 | plaintext length u32 le | payload) | tag[16]
 * The payload is lz4 block data when flags == SEAL_FLAG_LZ4, the raw
 * plaintext when flags == 0.  The nonce is random.  The AEAD is:
 *   SEAL_XCHACHA20POLY1305: XChaCha20-Poly1305 with the data key and the
 *     24-byte nonce;
 *   SEAL_AES256GCM: AES-256-GCM with a key of its own for each frame,
 *     BLAKE2b-256 keyed with the data key over nonce[0..15] (personalisation
 *     "zerofs-frame-gcm"), and the 12-byte IV nonce[16..23] | 0 0 0 0.
 *     GCM's 96-bit nonce is too short to draw at random for the number of
 *     frames a filesystem seals under one key; the derived key makes each
 *     frame's (key, IV) pair unique with 2^-128 odds per pair instead.
 *
 * Associated data (SEAL_AD_BYTES = 32, all integers little-endian).  Byte 0
 * separates the two domains so a data AD can never equal a metadata AD:
 *   data:  [0] 'D'  [1..3] 0  [4..7] frame u32  [8..15] segment u64
 *          [16..23] inode u64  [24..31] block u64
 *   meta:  [0] 'M'  [1] kind  [2..7] 0  [8..15] seq u64  [16..31] 0
 *
 * Key object, version 1 (132 bytes, cipher XChaCha20-Poly1305):
 *   [0..7] "ZEROFSK1"  [8..11] version u32  [12..19] opslimit u64
 *   [20..27] memlimit u64  [28..43] salt  [44..59] fsid  [60..83] nonce
 *   [84..131] data key wrapped with XChaCha20-Poly1305 (32 + 16 tag)
 * Version 2 (136 bytes) inserts [60..63] cipher u32; the nonce is at 64 and
 * the wrapped key at 88.  The bytes before the nonce are the associated data
 * of the wrapping, so the KDF cost, salt, fsid and cipher cannot be altered
 * without the password failing.
 *
 * Frame errors are not logged here: the caller knows which object failed.
 * Key object errors are logged, since they end up in front of a user. */
#include "codec/codec.h"

#include <errno.h>
#include <limits.h>
#include <lz4.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "common/util.h"
#include "log.h"

#define FRAME_OVERHEAD (SEAL_NONCE_BYTES + SEAL_HDR_BYTES + SEAL_TAG_BYTES)

#define KF_MAGIC "ZEROFSK1"
#define KF_OFF_VERSION 8
#define KF_OFF_OPS 12
#define KF_OFF_MEM 20
#define KF_OFF_SALT 28
#define KF_OFF_FSID 44
#define KF_OFF_CIPHER 60 /* version 2 */
#define KF_SALT_BYTES 16
/* Where the nonce starts (also the length of the wrapping's AD) and the
 * object's length, by version. */
#define KF_V1_OFF_NONCE 60
#define KF_V2_OFF_NONCE 64
#define KF_V2_BYTES (KF_V2_OFF_NONCE + SEAL_NONCE_BYTES + SEAL_KEY_BYTES + SEAL_TAG_BYTES)

_Static_assert(KF_V1_OFF_NONCE + SEAL_NONCE_BYTES + SEAL_KEY_BYTES + SEAL_TAG_BYTES ==
		       SEAL_KEYFILE_V1_BYTES,
	       "key object version 1 layout does not add up");
_Static_assert(KF_V2_BYTES == SEAL_KEYFILE_BYTES, "key object version 2 layout does not add up");

#define GCM_IV_BYTES 12
#define GCM_KEY_IN_BYTES 16 /* nonce bytes the frame key is derived from */
static const unsigned char gcm_personal[crypto_generichash_blake2b_PERSONALBYTES] =
	"zerofs-frame-gcm";
_Static_assert(sizeof("zerofs-frame-gcm") - 1 == crypto_generichash_blake2b_PERSONALBYTES,
	       "personalisation size");
_Static_assert(GCM_KEY_IN_BYTES + 8 == SEAL_NONCE_BYTES, "GCM nonce split");
_Static_assert(KF_SALT_BYTES == crypto_pwhash_SALTBYTES, "Argon2 salt size");
_Static_assert(SEAL_NONCE_BYTES == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce size");
_Static_assert(SEAL_TAG_BYTES == crypto_aead_xchacha20poly1305_ietf_ABYTES, "tag size");
_Static_assert(SEAL_KEY_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "key size");

/* Bounds on the KDF cost read from a key object: generous for any real
 * setting (libsodium SENSITIVE is ops 4, 1 GiB) yet small enough that a
 * corrupted key object cannot make us spin for hours or allocate terabytes. */
#define KDF_OPS_MAX 64ULL
#define KDF_MEM_MAX (4ULL << 30)

int seal_init(void)
{
	if (sodium_init() < 0) {
		log_error("libsodium failed to initialise");
		return -EIO;
	}
	return 0;
}

enum seal_cipher seal_cipher_default(void)
{
	return crypto_aead_aes256gcm_is_available() ? SEAL_AES256GCM : SEAL_XCHACHA20POLY1305;
}

int seal_cipher_parse(const char *name, enum seal_cipher *cipher)
{
	if (strcmp(name, "aes-256-gcm") == 0)
		*cipher = SEAL_AES256GCM;
	else if (strcmp(name, "xchacha20-poly1305") == 0)
		*cipher = SEAL_XCHACHA20POLY1305;
	else
		return -EINVAL;
	return 0;
}

const char *seal_cipher_name(enum seal_cipher cipher)
{
	return cipher == SEAL_AES256GCM ? "aes-256-gcm" : "xchacha20-poly1305";
}

struct seal_kdf seal_kdf_default(void)
{
	return (struct seal_kdf){ crypto_pwhash_OPSLIMIT_INTERACTIVE,
				  crypto_pwhash_MEMLIMIT_INTERACTIVE };
}

struct seal_kdf seal_kdf_min(void)
{
	return (struct seal_kdf){ crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN };
}

static int kdf_valid(struct seal_kdf kdf)
{
	return kdf.opslimit >= crypto_pwhash_OPSLIMIT_MIN && kdf.opslimit <= KDF_OPS_MAX &&
	       kdf.memlimit >= crypto_pwhash_MEMLIMIT_MIN && kdf.memlimit <= KDF_MEM_MAX &&
	       kdf.memlimit <= SIZE_MAX;
}

/* Derive the key-wrapping key from the password. */
static int derive_kek(unsigned char kek[SEAL_KEY_BYTES], const char *pw, size_t pwlen,
		      const uint8_t salt[KF_SALT_BYTES], struct seal_kdf kdf)
{
	if (crypto_pwhash(kek, SEAL_KEY_BYTES, pw, pwlen, salt, kdf.opslimit, (size_t)kdf.memlimit,
			  crypto_pwhash_ALG_ARGON2ID13) != 0) {
		log_error("Argon2id key derivation failed (out of memory? memlimit %llu)",
			  (unsigned long long)kdf.memlimit);
		return -ENOMEM;
	}
	return 0;
}

/* Where the nonce of a key object of this version starts (also the length
 * of the wrapping's AD), and the object's length. */
static size_t kf_nonce_off(uint32_t version)
{
	return version == 1 ? KF_V1_OFF_NONCE : KF_V2_OFF_NONCE;
}

static size_t kf_bytes(uint32_t version)
{
	return version == 1 ? SEAL_KEYFILE_V1_BYTES : KF_V2_BYTES;
}

/* Fill out with a key object wrapping key under password, with a fresh salt
 * and nonce.  An XChaCha20-Poly1305 key gets a version 1 object, which older
 * programs read too.  Returns the object's length or -errno. */
static ssize_t keyfile_wrap(const char *pw, size_t pwlen, struct seal_kdf kdf,
			    const struct seal_key *key, const uint8_t fsid[SEAL_FSID_BYTES],
			    uint8_t out[SEAL_KEYFILE_BYTES])
{
	uint32_t version = key->cipher == SEAL_XCHACHA20POLY1305 ? 1 : 2;
	size_t nonce_off = kf_nonce_off(version);
	unsigned char kek[SEAL_KEY_BYTES];
	int r;

	if (!kdf_valid(kdf)) {
		log_error("KDF cost out of bounds (ops %llu, mem %llu)",
			  (unsigned long long)kdf.opslimit, (unsigned long long)kdf.memlimit);
		return -EINVAL;
	}
	memcpy(out, KF_MAGIC, 8);
	put_le32(out + KF_OFF_VERSION, version);
	put_le64(out + KF_OFF_OPS, kdf.opslimit);
	put_le64(out + KF_OFF_MEM, kdf.memlimit);
	randombytes_buf(out + KF_OFF_SALT, KF_SALT_BYTES);
	memcpy(out + KF_OFF_FSID, fsid, SEAL_FSID_BYTES);
	if (version >= 2)
		put_le32(out + KF_OFF_CIPHER, (uint32_t)key->cipher);
	randombytes_buf(out + nonce_off, SEAL_NONCE_BYTES);

	r = derive_kek(kek, pw, pwlen, out + KF_OFF_SALT, kdf);
	if (r == 0)
		crypto_aead_xchacha20poly1305_ietf_encrypt(out + nonce_off + SEAL_NONCE_BYTES, NULL,
							   key->k, SEAL_KEY_BYTES, out, nonce_off,
							   NULL, out + nonce_off, kek);
	sodium_memzero(kek, sizeof(kek));
	return r < 0 ? r : (ssize_t)kf_bytes(version);
}

ssize_t seal_keyfile_create(const char *password, size_t pwlen, struct seal_kdf kdf,
			    enum seal_cipher cipher, struct seal_key *key,
			    uint8_t fsid[SEAL_FSID_BYTES], uint8_t out[SEAL_KEYFILE_BYTES])
{
	ssize_t r;

	if (cipher != SEAL_XCHACHA20POLY1305 && cipher != SEAL_AES256GCM)
		return -EINVAL;
	randombytes_buf(key->k, SEAL_KEY_BYTES);
	key->cipher = cipher;
	randombytes_buf(fsid, SEAL_FSID_BYTES);
	r = keyfile_wrap(password, pwlen, kdf, key, fsid, out);
	if (r < 0)
		sodium_memzero(key, sizeof(*key));
	return r;
}

/* Check that blob is a key object this program can read; sets its KDF cost,
 * version and cipher. */
static int keyfile_check(const uint8_t *b, size_t len, struct seal_kdf *kdf, uint32_t *version,
			 enum seal_cipher *cipher)
{
	uint32_t c = SEAL_XCHACHA20POLY1305;

	if (len < KF_OFF_VERSION + 4 || memcmp(b, KF_MAGIC, 8) != 0) {
		log_error("not a zerofs key object (bad magic)");
		return -EINVAL;
	}
	*version = get_le32(b + KF_OFF_VERSION);
	if (*version > SEAL_KEYFILE_VERSION) {
		log_error("key object version %u is newer than this program supports (%u)",
			  *version, SEAL_KEYFILE_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (*version == 0 || len != kf_bytes(*version)) {
		log_error("malformed key object (version %u, %zu bytes)", *version, len);
		return -EINVAL;
	}
	kdf->opslimit = get_le64(b + KF_OFF_OPS);
	kdf->memlimit = get_le64(b + KF_OFF_MEM);
	if (!kdf_valid(*kdf)) {
		log_error("key object has an implausible KDF cost (ops %llu, mem %llu)",
			  (unsigned long long)kdf->opslimit, (unsigned long long)kdf->memlimit);
		return -EINVAL;
	}
	if (*version >= 2) {
		c = get_le32(b + KF_OFF_CIPHER);
		if (c != SEAL_XCHACHA20POLY1305 && c != SEAL_AES256GCM) {
			log_error("key object names cipher %u, unknown to this program", c);
			return -EPROTONOSUPPORT;
		}
	}
	*cipher = (enum seal_cipher)c;
	return 0;
}

int seal_keyfile_open(const void *blob, size_t len, const char *password, size_t pwlen,
		      struct seal_key *key, uint8_t fsid[SEAL_FSID_BYTES])
{
	const uint8_t *b = blob;
	unsigned char kek[SEAL_KEY_BYTES];
	struct seal_kdf kdf;
	enum seal_cipher cipher;
	uint32_t version;
	size_t nonce_off;
	int r;

	r = keyfile_check(b, len, &kdf, &version, &cipher);
	if (r < 0)
		return r;
	nonce_off = kf_nonce_off(version);
	r = derive_kek(kek, password, pwlen, b + KF_OFF_SALT, kdf);
	if (r < 0)
		return r;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
		    key->k, NULL, NULL, b + nonce_off + SEAL_NONCE_BYTES,
		    SEAL_KEY_BYTES + SEAL_TAG_BYTES, b, nonce_off, b + nonce_off, kek) != 0) {
		/* A corrupted key object is indistinguishable from a wrong password. */
		log_error("wrong password (or corrupted key object)");
		sodium_memzero(key, sizeof(*key));
		r = -EACCES;
	} else {
		key->cipher = cipher;
		memcpy(fsid, b + KF_OFF_FSID, SEAL_FSID_BYTES);
	}
	sodium_memzero(kek, sizeof(kek));
	return r;
}

ssize_t seal_keyfile_rewrap(const void *blob, size_t len, const char *oldpw, size_t oldlen,
			    const char *newpw, size_t newlen, struct seal_kdf kdf,
			    uint8_t out[SEAL_KEYFILE_BYTES])
{
	struct seal_key key;
	uint8_t fsid[SEAL_FSID_BYTES];
	ssize_t r;

	r = seal_keyfile_open(blob, len, oldpw, oldlen, &key, fsid);
	if (r < 0)
		return r;
	r = keyfile_wrap(newpw, newlen, kdf, &key, fsid, out);
	sodium_memzero(&key, sizeof(key));
	return r;
}

size_t seal_frame_bound(size_t plen)
{
	/* Compressed output is kept only when smaller than the input. */
	return plen + FRAME_OVERHEAD;
}

/* lz4-compress plain into dst when that saves at least one byte; returns the
 * compressed size, or 0 to store raw. */
static size_t try_compress(const void *plain, size_t plen, uint8_t *dst)
{
	int n;

	if (plen < 2 || plen > LZ4_MAX_INPUT_SIZE)
		return 0;
	n = LZ4_compress_default(plain, (char *)dst, (int)plen, (int)plen - 1);
	return n > 0 ? (size_t)n : 0;
}

/* Each thread keeps one AES-256-GCM context, set up with the cipher once
 * and only re-keyed per frame: no allocation and no cipher lookup on the
 * write and read paths.  Freed when the thread exits. */
static pthread_key_t gcm_tls;
static pthread_once_t gcm_tls_once = PTHREAD_ONCE_INIT;
static int gcm_tls_err;

static void gcm_ctx_free(void *ctx)
{
	EVP_CIPHER_CTX_free(ctx);
}

static void gcm_tls_create(void)
{
	gcm_tls_err = pthread_key_create(&gcm_tls, gcm_ctx_free);
}

static EVP_CIPHER_CTX *gcm_thread_ctx(void)
{
	if (pthread_once(&gcm_tls_once, gcm_tls_create) != 0 || gcm_tls_err)
		return NULL;
	EVP_CIPHER_CTX *ctx = pthread_getspecific(gcm_tls);
	if (ctx)
		return ctx;
	ctx = EVP_CIPHER_CTX_new();
	if (ctx && (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, 1) != 1 ||
		    pthread_setspecific(gcm_tls, ctx) != 0)) {
		EVP_CIPHER_CTX_free(ctx);
		ctx = NULL;
	}
	return ctx;
}

/* This thread's AES-256-GCM context, keyed for one frame: its key derived
 * from the data key and nonce[0..15], its IV nonce[16..23] | 0, the AD
 * already fed.  NULL when OpenSSL fails (out of memory). */
static EVP_CIPHER_CTX *gcm_begin(const struct seal_key *key, const uint8_t *nonce, int enc,
				 const void *ad, size_t adlen)
{
	unsigned char fk[SEAL_KEY_BYTES];
	uint8_t iv[GCM_IV_BYTES] = { 0 };
	EVP_CIPHER_CTX *ctx = gcm_thread_ctx();
	int ok, n;

	if (!ctx)
		return NULL;
	crypto_generichash_blake2b_salt_personal(fk, sizeof(fk), nonce, GCM_KEY_IN_BYTES, key->k,
						 SEAL_KEY_BYTES, NULL, gcm_personal);
	memcpy(iv, nonce + GCM_KEY_IN_BYTES, SEAL_NONCE_BYTES - GCM_KEY_IN_BYTES);
	ok = EVP_CipherInit_ex(ctx, NULL, NULL, fk, iv, enc) == 1 &&
	     (adlen == 0 || (adlen <= INT_MAX &&
			     EVP_CipherUpdate(ctx, NULL, &n, ad, (int)adlen) == 1));
	sodium_memzero(fk, sizeof(fk));
	return ok ? ctx : NULL;
}

/* Feed len bytes through a GCM context (in may equal out): EVP counts in
 * int, a checkpoint may not fit one. */
static int gcm_update(EVP_CIPHER_CTX *ctx, uint8_t *out, const uint8_t *in, size_t len)
{
	while (len > 0) {
		int chunk = len > (1u << 30) ? 1 << 30 : (int)len, n;

		if (EVP_CipherUpdate(ctx, out, &n, in, chunk) != 1 || n != chunk)
			return -1;
		out += chunk;
		in += chunk;
		len -= (size_t)chunk;
	}
	return 0;
}

/* Encrypt mlen bytes of m into c (c may equal m) and write the tag: the
 * frame's AEAD under key's cipher.  0, or -ENOMEM when OpenSSL fails. */
static int aead_seal(const struct seal_key *key, const uint8_t *nonce, uint8_t *c,
		     const uint8_t *m, size_t mlen, const void *ad, size_t adlen,
		     uint8_t tag[SEAL_TAG_BYTES])
{
	EVP_CIPHER_CTX *ctx;
	int n, ok;

	if (key->cipher != SEAL_AES256GCM) {
		crypto_aead_xchacha20poly1305_ietf_encrypt_detached(c, tag, NULL, m, mlen, ad,
								    adlen, NULL, nonce, key->k);
		return 0;
	}
	ctx = gcm_begin(key, nonce, 1, ad, adlen);
	if (!ctx)
		return -ENOMEM;
	ok = gcm_update(ctx, c, m, mlen) == 0 && EVP_CipherFinal_ex(ctx, c + mlen, &n) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_BYTES, tag) == 1;
	return ok ? 0 : -ENOMEM;
}

/* Decrypt and authenticate mlen bytes of c into m (m may equal c).  0,
 * -EBADMSG when authentication fails, with m then holding zeros (or
 * untouched), never plaintext that failed authentication; -ENOMEM when
 * OpenSSL cannot set up the cipher (m untouched): not the frame's fault. */
static int aead_open(const struct seal_key *key, const uint8_t *nonce, uint8_t *m,
		     const uint8_t *c, size_t mlen, const void *ad, size_t adlen,
		     const uint8_t tag[SEAL_TAG_BYTES])
{
	uint8_t t[SEAL_TAG_BYTES];
	EVP_CIPHER_CTX *ctx;
	int n, ok;

	if (key->cipher != SEAL_AES256GCM)
		return crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
			       m, NULL, c, mlen, tag, ad, adlen, nonce, key->k) == 0
			       ? 0
			       : -EBADMSG;
	ctx = gcm_begin(key, nonce, 0, ad, adlen);
	if (!ctx)
		return -ENOMEM;
	memcpy(t, tag, sizeof(t)); /* the tag may sit where m is written */
	ok = gcm_update(ctx, m, c, mlen) == 0 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_BYTES, t) == 1 &&
	     EVP_CipherFinal_ex(ctx, m + mlen, &n) == 1;
	if (!ok) {
		sodium_memzero(m, mlen);
		return -EBADMSG;
	}
	return 0;
}

ssize_t seal_frame_encode(const struct seal_key *key, const void *ad, size_t adlen,
			  const void *plain, size_t plen, void *out, size_t outcap, int compress)
{
	uint8_t *nonce = out;
	uint8_t *hdr = nonce + SEAL_NONCE_BYTES;
	uint8_t *payload = hdr + SEAL_HDR_BYTES;
	size_t psize = 0, mlen;
	int r;

	if (plen > UINT32_MAX)
		return -EFBIG;
	if (outcap < seal_frame_bound(plen))
		return -EOVERFLOW;
	if (compress)
		psize = try_compress(plain, plen, payload);
	hdr[0] = psize ? SEAL_FLAG_LZ4 : 0;
	if (!psize) {
		memcpy(payload, plain, plen);
		psize = plen;
	}
	put_le32(hdr + 1, (uint32_t)plen);
	randombytes_buf(nonce, SEAL_NONCE_BYTES);
	mlen = SEAL_HDR_BYTES + psize;
	r = aead_seal(key, nonce, hdr, hdr, mlen, ad, adlen, hdr + mlen);
	if (r < 0)
		return r;
	return (ssize_t)(SEAL_NONCE_BYTES + mlen + SEAL_TAG_BYTES);
}

ssize_t seal_frame_decode(const struct seal_key *key, const void *ad, size_t adlen, void *frame,
			  size_t flen, void *out, size_t outcap)
{
	uint8_t *nonce = frame;
	uint8_t *hdr = nonce + SEAL_NONCE_BYTES;
	uint8_t *payload = hdr + SEAL_HDR_BYTES;
	size_t mlen, psize;
	uint32_t plen;

	if (flen < FRAME_OVERHEAD)
		return -EBADMSG;
	mlen = flen - SEAL_NONCE_BYTES - SEAL_TAG_BYTES;
	int r = aead_open(key, nonce, hdr, hdr, mlen, ad, adlen, hdr + mlen);
	if (r < 0)
		return r;
	psize = mlen - SEAL_HDR_BYTES;
	plen = get_le32(hdr + 1);
	if (hdr[0] != 0 && hdr[0] != SEAL_FLAG_LZ4)
		return -EBADMSG;
	if (plen > outcap)
		return -EOVERFLOW;
	if (hdr[0] == 0) {
		if (psize != plen)
			return -EBADMSG;
		memcpy(out, payload, plen);
		return plen;
	}
	if (plen > INT_MAX || psize > INT_MAX ||
	    LZ4_decompress_safe((const char *)payload, out, (int)psize, (int)plen) != (int)plen) {
		/* Authentic but undecodable: never hand back partial output. */
		memset(out, 0, plen);
		return -EBADMSG;
	}
	return plen;
}

ssize_t seal_frame_decode_direct(const struct seal_key *key, const void *ad, size_t adlen,
				 void *frame, size_t flen, void *out, size_t outcap)
{
	uint8_t *nonce = frame;
	uint8_t *c = nonce + SEAL_NONCE_BYTES;
	uint8_t *m = (uint8_t *)out - SEAL_HDR_BYTES;
	size_t mlen, psize;
	uint32_t plen;

	if (flen < FRAME_OVERHEAD)
		return -EBADMSG;
	mlen = flen - SEAL_NONCE_BYTES - SEAL_TAG_BYTES;
	psize = mlen - SEAL_HDR_BYTES;
	if (psize > outcap) /* too big either way: the in-place path says which error */
		return seal_frame_decode(key, ad, adlen, frame, flen, out, outcap);
	int r = aead_open(key, nonce, m, c, mlen, ad, adlen, c + mlen);
	if (r < 0)
		return r;
	plen = get_le32(m + 1);
	int rc = 0;
	if (m[0] != 0 && m[0] != SEAL_FLAG_LZ4)
		rc = -EBADMSG;
	else if (plen > outcap)
		rc = -EOVERFLOW;
	else if (m[0] == 0 && psize != plen)
		rc = -EBADMSG;
	if (rc < 0) {
		memset(out, 0, psize);
		return rc;
	}
	if (m[0] == 0)
		return plen;
	/* lz4: the compressed payload goes back over the frame's ciphertext
	 * (no longer needed), to be decompressed into out. */
	uint8_t *payload = c + SEAL_HDR_BYTES;
	memcpy(payload, out, psize);
	if (plen > INT_MAX || psize > INT_MAX ||
	    LZ4_decompress_safe((const char *)payload, out, (int)psize, (int)plen) != (int)plen) {
		memset(out, 0, plen);
		return -EBADMSG;
	}
	return plen;
}

void seal_ad_data(uint8_t ad[SEAL_AD_BYTES], uint64_t seg, uint32_t frame, uint64_t ino,
		  uint64_t blk)
{
	memset(ad, 0, SEAL_AD_BYTES);
	ad[0] = 'D';
	put_le32(ad + 4, frame);
	put_le64(ad + 8, seg);
	put_le64(ad + 16, ino);
	put_le64(ad + 24, blk);
}

void seal_ad_meta(uint8_t ad[SEAL_AD_BYTES], char kind, uint64_t seq)
{
	memset(ad, 0, SEAL_AD_BYTES);
	ad[0] = 'M';
	ad[1] = (uint8_t)kind;
	put_le64(ad + 8, seq);
}
