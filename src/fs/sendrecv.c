/* sendrecv.c: incremental send and receive of snapshots (fs.h).
 *
 * A stream carries exactly the changes between two snapshots: the
 * namespace tables as a SQLite changeset (inodes, names, symlinks,
 * attributes), and the blocks whose extents differ, as plaintext, decoded
 * from the source's segments and sealed again by the target into its own.
 * Its size is proportional to the change, not to the filesystem.
 *
 * Format: a 64-byte header (magic "ZFSSTRM1", version, Argon2id parameters
 * and salt of the stream key, the secretstream header), then messages, each
 * a u32 length and a crypto_secretstream_xchacha20poly1305 message whose
 * plaintext is a type byte and its payload:
 *   'B' begin   version, source fsid, from/to barriers, next_ino, names
 *   'C' a piece of the changeset
 *   'D' a block: ino, blk, plen, bytes
 *   'X' a block dropped: ino, blk
 *   'E' end (tagged FINAL): counts of blocks, drops and changeset bytes
 * Every message is authenticated and ordered, and the end is tagged, so a
 * stream that is tampered with, reordered, or cut short is refused before
 * anything of it becomes durable: the target applies it in memory and runs
 * one barrier (which also stores the snapshot) only after the end.
 *
 * The key is derived from a stream password shared by the two sides
 * (ZEROFS_STREAM_PASSWORD), not from either store's password. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "common/util.h"
#include "fs/fs-int.h"
#include "log.h"

#define STREAM_MAGIC "ZFSSTRM1"
#define STREAM_VERSION 1
#define STREAM_HEADER 64
#define MSG_MAX (DATA_BLOCK_SIZE + 64)
#define CS_PIECE (1024 * 1024)
#define READ_SPAN (4 * 1024 * 1024)

struct stream {
	int fd;
	crypto_secretstream_xchacha20poly1305_state st;
	uint8_t *plain, *cipher; /* MSG_MAX (+ ABYTES) each */
	uint64_t bytes;
};

static int derive(uint8_t key[32], const char *password, const uint8_t *salt, uint32_t ops,
		  uint64_t mem)
{
	if (crypto_pwhash(key, 32, password, strlen(password), salt, ops, (size_t)mem,
			  crypto_pwhash_ALG_ARGON2ID13) != 0)
		return -ENOMEM;
	return 0;
}

static int stream_alloc(struct stream *s, int fd)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->plain = malloc(MSG_MAX > CS_PIECE + 16 ? MSG_MAX : CS_PIECE + 16);
	s->cipher = malloc((MSG_MAX > CS_PIECE + 16 ? MSG_MAX : CS_PIECE + 16) +
			   crypto_secretstream_xchacha20poly1305_ABYTES);
	return s->plain && s->cipher ? 0 : -ENOMEM;
}

static void stream_free(struct stream *s)
{
	free(s->plain);
	free(s->cipher);
	sodium_memzero(&s->st, sizeof(s->st));
}

/* ---- send ---- */

static int push(struct stream *s, size_t len, int final)
{
	unsigned long long clen;
	crypto_secretstream_xchacha20poly1305_push(
		&s->st, s->cipher + 4, &clen, s->plain, len, NULL, 0,
		final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
	put_le32(s->cipher, (uint32_t)clen);
	int rc = util_write_full(s->fd, s->cipher, 4 + (size_t)clen);
	if (rc < 0)
		log_error("send: cannot write the stream: %s", strerror(-rc));
	s->bytes += 4 + clen;
	return rc;
}

struct want {
	uint64_t ino;
	struct idx_extent e;
};

struct send_ctx {
	struct want *v;
	size_t n, cap;
	uint64_t *drops; /* ino, blk pairs */
	size_t ndrops, dcap;
};

static int on_changed(void *arg, uint64_t ino, const struct idx_extent *e)
{
	struct send_ctx *c = arg;
	if (c->n == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 1024;
		struct want *nv = realloc(c->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		c->v = nv;
		c->cap = nc;
	}
	c->v[c->n++] = (struct want){ino, *e};
	return 0;
}

static int on_dropped(void *arg, uint64_t ino, uint64_t blk)
{
	struct send_ctx *c = arg;
	if (c->ndrops * 2 + 2 > c->dcap) {
		size_t nc = c->dcap ? c->dcap * 2 : 1024;
		uint64_t *nv = realloc(c->drops, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		c->drops = nv;
		c->dcap = nc;
	}
	c->drops[c->ndrops * 2] = ino;
	c->drops[c->ndrops * 2 + 1] = blk;
	c->ndrops++;
	return 0;
}

/* Write snapshot name's index to path. */
static int snapshot_file(struct fs *fs, const char *name, const char *path, uint64_t *seq)
{
	struct jnl_snapshot sn;
	int rc = jnl_snapshot_get(fs->st, &fs->key, name, &sn);
	if (rc == -ENOENT)
		log_error("send: the store has no snapshot named %s", name);
	if (rc < 0)
		return rc;
	struct idx *ix = idx_open_image(path, sn.image, sn.image_len);
	free(sn.image);
	if (!ix)
		return -errno;
	idx_close(ix);
	*seq = sn.seq;
	return 0;
}

static void remove_db(const char *path)
{
	char p[4400];
	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
}

/* Send the blocks of c->v[i..j) (one segment, within READ_SPAN). */
static int send_span(struct fs *fs, struct stream *s, const struct want *w, size_t n,
		     uint8_t *buf)
{
	char name[64];
	snprintf(name, sizeof(name), "segments/%016" PRIx64, w[0].e.seg);
	uint64_t start = w[0].e.off, end = (uint64_t)w[n - 1].e.off + w[n - 1].e.len;
	ssize_t got = store_get(fs->st, name, start, (size_t)(end - start), buf);
	if (got < 0 || (uint64_t)got != end - start) {
		log_error("send: cannot read %s: %s", name,
			  got < 0 ? strerror((int)-got) : "short read");
		return got < 0 ? (int)got : -EIO;
	}
	for (size_t i = 0; i < n; i++) {
		struct data_frame f = {
			.ino = w[i].ino,
			.blk = w[i].e.blk,
			.off = (uint32_t)(w[i].e.off - start),
			.len = w[i].e.len,
			.plen = w[i].e.plen,
		};
		uint8_t *p = s->plain;
		p[0] = 'D';
		put_le64(p + 1, w[i].ino);
		put_le64(p + 9, w[i].e.blk);
		put_le32(p + 17, w[i].e.plen);
		int rc = data_open_frame(&fs->key, w[i].e.seg, w[i].e.frame, &f, buf, p + 21);
		if (rc == 0)
			rc = push(s, 21 + w[i].e.plen, 0);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int fs_send(struct fs *fs, const char *from, const char *to, int fd, const char *password,
	    int kdf_min, FILE *report, fs_progress_fn progress, void *parg)
{
	char pa[4300], pb[4300];
	struct stream s;
	struct send_ctx c = {0};
	CLEANUP_FREE void *cs = NULL;
	CLEANUP_FREE uint8_t *span = malloc(READ_SPAN + DATA_BLOCK_SIZE * 2);
	size_t cslen = 0;
	uint64_t from_seq = 0, to_seq = 0;
	int64_t next_ino = 0;
	snprintf(pa, sizeof(pa), "%s/send-%ld-a.db", fs->cache_path, (long)getpid());
	snprintf(pb, sizeof(pb), "%s/send-%ld-b.db", fs->cache_path, (long)getpid());
	int rc = stream_alloc(&s, fd);
	if (rc == 0 && !span)
		rc = -ENOMEM;
	if (rc == 0)
		rc = snapshot_file(fs, to, pb, &to_seq);
	if (rc == 0 && from) {
		rc = snapshot_file(fs, from, pa, &from_seq);
	} else if (rc == 0) {
		struct idx *e = idx_open(pa); /* the empty schema: a full stream */
		if (!e)
			rc = -errno;
		else
			idx_close(e);
	}
	if (rc == 0 && from && from_seq > to_seq) {
		log_error("send: snapshot %s is not older than %s", from, to);
		rc = -EINVAL;
	}
	if (rc == 0)
		rc = idx_stream_diff(pa, pb, &cs, &cslen, on_changed, on_dropped, &c);
	if (rc == 0) {
		pthread_mutex_lock(&fs->lock);
		rc = idx_super_get(fs->ix, "next_ino", &next_ino);
		pthread_mutex_unlock(&fs->lock);
		if (rc == -ENOENT)
			rc = 0;
	}
	/* The header: the stream key's parameters and salt. */
	uint8_t hdr[STREAM_HEADER], key[32];
	uint32_t ops = kdf_min ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_OPSLIMIT_INTERACTIVE;
	uint64_t mem = kdf_min ? crypto_pwhash_MEMLIMIT_MIN : crypto_pwhash_MEMLIMIT_INTERACTIVE;
	if (rc == 0) {
		memcpy(hdr, STREAM_MAGIC, 8);
		put_le32(hdr + 8, STREAM_VERSION);
		put_le32(hdr + 12, ops);
		put_le64(hdr + 16, mem);
		randombytes_buf(hdr + 24, 16);
		rc = derive(key, password, hdr + 24, ops, mem);
	}
	if (rc == 0) {
		crypto_secretstream_xchacha20poly1305_init_push(&s.st, hdr + 40, key);
		sodium_memzero(key, sizeof(key));
		rc = util_write_full(fd, hdr, sizeof(hdr));
	}
	if (rc == 0) {
		uint8_t *p = s.plain;
		size_t fl = from ? strlen(from) : 0, tl = strlen(to);
		p[0] = 'B';
		put_le32(p + 1, STREAM_VERSION);
		memcpy(p + 5, fs->fsid_hex, 32);
		put_le64(p + 37, from_seq);
		put_le64(p + 45, to_seq);
		put_le64(p + 53, (uint64_t)next_ino);
		p[61] = (uint8_t)fl;
		memcpy(p + 62, from ? from : "", fl);
		p[62 + fl] = (uint8_t)tl;
		memcpy(p + 63 + fl, to, tl);
		rc = push(&s, 63 + fl + tl, 0);
	}
	for (size_t off = 0; rc == 0 && off < cslen; off += CS_PIECE) {
		size_t n = MIN(CS_PIECE, cslen - off);
		s.plain[0] = 'C';
		memcpy(s.plain + 1, (uint8_t *)cs + off, n);
		rc = push(&s, 1 + n, 0);
	}
	uint64_t bytes = 0;
	for (size_t i = 0; rc == 0 && i < c.n;) {
		size_t j = i + 1;
		while (j < c.n && c.v[j].e.seg == c.v[i].e.seg &&
		       (uint64_t)c.v[j].e.off + c.v[j].e.len - c.v[i].e.off <= READ_SPAN &&
		       c.v[j].e.off >= (uint64_t)c.v[j - 1].e.off + c.v[j - 1].e.len)
			j++;
		rc = send_span(fs, &s, &c.v[i], j - i, span);
		for (size_t k = i; k < j; k++)
			bytes += c.v[k].e.plen;
		i = j;
		if (progress)
			progress(parg, i, c.n);
	}
	for (size_t i = 0; rc == 0 && i < c.ndrops; i++) {
		s.plain[0] = 'X';
		put_le64(s.plain + 1, c.drops[i * 2]);
		put_le64(s.plain + 9, c.drops[i * 2 + 1]);
		rc = push(&s, 17, 0);
	}
	if (rc == 0) {
		s.plain[0] = 'E';
		put_le64(s.plain + 1, c.n);
		put_le64(s.plain + 9, c.ndrops);
		put_le64(s.plain + 17, cslen);
		rc = push(&s, 25, 1);
	}
	if (rc == 0 && report)
		fprintf(report,
			"send: %s%s%s: %zu blocks (%" PRIu64 " bytes of data), %zu dropped, %zu bytes "
			"of namespace changes; stream %" PRIu64 " bytes\n",
			from ? from : "", from ? " -> " : "", to, c.n, bytes, c.ndrops, cslen,
			s.bytes + STREAM_HEADER);
	remove_db(pa);
	remove_db(pb);
	free(c.v);
	free(c.drops);
	stream_free(&s);
	return rc;
}

/* ---- receive ---- */

/* Read len bytes (fewer only at the end of the input). */
static ssize_t read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, (uint8_t *)buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Read one message into s->plain; *len its length, *final its tag.
 * -EBADMSG on a damaged or forged message, -EPIPE at a premature end. */
static int pull(struct stream *s, size_t *len, int *final)
{
	uint8_t l[4];
	ssize_t n = read_full(s->fd, l, 4);
	if (n != 4)
		return n < 0 ? (int)n : -EPIPE;
	uint32_t clen = get_le32(l);
	size_t cap = (MSG_MAX > CS_PIECE + 16 ? MSG_MAX : CS_PIECE + 16) +
		     crypto_secretstream_xchacha20poly1305_ABYTES;
	if (clen < crypto_secretstream_xchacha20poly1305_ABYTES || clen > cap)
		return -EBADMSG;
	n = read_full(s->fd, s->cipher, clen);
	if (n != (ssize_t)clen)
		return n < 0 ? (int)n : -EPIPE;
	unsigned long long mlen;
	unsigned char tag;
	if (crypto_secretstream_xchacha20poly1305_pull(&s->st, s->plain, &mlen, &tag, s->cipher,
						       clen, NULL, 0) != 0)
		return -EBADMSG;
	s->bytes += 4 + clen;
	*len = (size_t)mlen;
	*final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
	return mlen ? 0 : -EBADMSG;
}

static int count_snap(void *arg, const char *name)
{
	(void)name;
	(*(int *)arg)++;
	return 0;
}

static int check_target(struct fs *fs, const char *from, const char *to, int force)
{
	struct jnl_snapshot sn;
	int rc = jnl_snapshot_get(fs->st, &fs->key, to, &sn);
	if (rc == 0) {
		free(sn.image);
		log_error("receive: the target already has a snapshot named %s", to);
		return -EEXIST;
	}
	if (rc != -ENOENT)
		return rc;
	if (!from) {
		uint64_t inodes = 0;
		int snaps = 0;
		pthread_mutex_lock(&fs->lock);
		rc = idx_inode_count(fs->ix, &inodes);
		pthread_mutex_unlock(&fs->lock);
		if (rc == 0)
			rc = jnl_snapshot_list(fs->st, count_snap, &snaps);
		if (rc == 0 && (inodes > 1 || snaps)) {
			log_error("receive: a full stream needs an empty target (a new store); this "
				  "one has %" PRIu64 " inodes and %d snapshots",
				  inodes, snaps);
			rc = -ENOTEMPTY;
		}
		return rc;
	}
	rc = jnl_snapshot_get(fs->st, &fs->key, from, &sn);
	if (rc == -ENOENT) {
		log_error("receive: the stream's base is snapshot %s, which the target does not "
			  "have",
			  from);
		return -ENOENT;
	}
	if (rc < 0)
		return rc;
	int differs = 0;
	pthread_mutex_lock(&fs->lock);
	rc = idx_differs_from_image(fs->ix, sn.image, sn.image_len, &differs);
	if (rc == 0 && differs && force) {
		/* Like zfs receive -F: back to the base first.  Durable only
		 * with the rest of the stream, at its one barrier. */
		rc = idx_rollback_to_image(fs->ix, sn.image, sn.image_len);
		if (rc == 0)
			log_warn("receive: the target changed since snapshot %s; rolled back to "
				 "it (--force)",
				 from);
		differs = 0;
	}
	pthread_mutex_unlock(&fs->lock);
	free(sn.image);
	if (rc == 0 && differs) {
		log_error("receive: the target has changed since its snapshot %s (the stream's "
			  "base); refusing to apply over it (--force rolls it back first)",
			  from);
		rc = -ESTALE;
	}
	return rc;
}

int fs_receive(struct fs *fs, int fd, const char *password, int force, FILE *report,
	       fs_progress_fn progress, void *parg, int *applied)
{
	if (applied)
		*applied = 0;
	struct stream s;
	uint8_t hdr[STREAM_HEADER], key[32];
	char from[JNL_SNAP_NAME_MAX + 1] = "", to[JNL_SNAP_NAME_MAX + 1] = "";
	uint8_t *cs = NULL;
	size_t cslen = 0, cscap = 0, len = 0;
	uint64_t blocks = 0, drops = 0, next_ino = 0;
	int final = 0, begun = 0, ended = 0;
	int rc = stream_alloc(&s, fd);
	ssize_t n = rc == 0 ? read_full(fd, hdr, sizeof(hdr)) : -1;
	if (rc == 0 && (n != (ssize_t)sizeof(hdr) || memcmp(hdr, STREAM_MAGIC, 8) != 0 ||
			get_le32(hdr + 8) != STREAM_VERSION)) {
		log_error("receive: this is not a zerofs-fuse stream (or of another version)");
		rc = -EBADMSG;
	}
	if (rc == 0) {
		uint32_t ops = get_le32(hdr + 12);
		uint64_t mem = get_le64(hdr + 16);
		if (ops > crypto_pwhash_OPSLIMIT_SENSITIVE || mem > crypto_pwhash_MEMLIMIT_SENSITIVE)
			rc = -EBADMSG;
		else
			rc = derive(key, password, hdr + 24, ops, mem);
	}
	if (rc == 0 && crypto_secretstream_xchacha20poly1305_init_pull(&s.st, hdr + 40, key) != 0)
		rc = -EBADMSG;
	sodium_memzero(key, sizeof(key));
	while (rc == 0 && !ended) {
		rc = pull(&s, &len, &final);
		if (rc == -EBADMSG && !begun)
			log_error("receive: the stream cannot be opened: wrong stream password, or "
				  "it is damaged");
		else if (rc == -EBADMSG)
			log_error("receive: the stream is damaged or was tampered with");
		else if (rc == -EPIPE)
			log_error("receive: the stream ends early (truncated)");
		if (rc < 0)
			break;
		uint8_t *p = s.plain;
		if (!begun && p[0] != 'B') {
			rc = -EBADMSG;
			break;
		}
		if (cslen && p[0] != 'C') {
			/* The changeset is complete: apply it before any block. */
			pthread_mutex_lock(&fs->lock);
			rc = idx_changeset_apply_logged(fs->ix, cs, cslen);
			pthread_mutex_unlock(&fs->lock);
			free(cs);
			cs = NULL;
			cscap = 0;
			cslen = 0;
			if (rc < 0)
				break;
		}
		switch (p[0]) {
		case 'B': {
			if (begun || len < 63 || get_le32(p + 1) != STREAM_VERSION) {
				rc = -EBADMSG;
				break;
			}
			size_t fl = p[61];
			if (63 + fl > len || fl > JNL_SNAP_NAME_MAX) {
				rc = -EBADMSG;
				break;
			}
			size_t tl = p[62 + fl];
			if (63 + fl + tl != len || tl == 0 || tl > JNL_SNAP_NAME_MAX) {
				rc = -EBADMSG;
				break;
			}
			memcpy(from, p + 62, fl);
			from[fl] = '\0';
			memcpy(to, p + 63 + fl, tl);
			to[tl] = '\0';
			next_ino = get_le64(p + 53);
			if ((fl && !jnl_snapshot_valid_name(from)) || !jnl_snapshot_valid_name(to)) {
				rc = -EBADMSG;
				break;
			}
			begun = 1;
			rc = check_target(fs, fl ? from : NULL, to, force);
			break;
		}
		case 'C':
			if (cslen + len - 1 > cscap) {
				size_t nc = (cslen + len) * 2;
				uint8_t *nb = realloc(cs, nc);
				if (!nb) {
					rc = -ENOMEM;
					break;
				}
				cs = nb;
				cscap = nc;
			}
			memcpy(cs + cslen, p + 1, len - 1);
			cslen += len - 1;
			break;
		case 'D': {
			uint32_t plen = len >= 21 ? get_le32(p + 17) : 0;
			if (len < 21 || plen > DATA_BLOCK_SIZE || 21 + (size_t)plen != len) {
				rc = -EBADMSG;
				break;
			}
			pthread_mutex_lock(&fs->lock);
			rc = idx_begin(fs->ix);
			if (rc == 0) {
				rc = data_put_block(fs->d, get_le64(p + 1), get_le64(p + 9), p + 21,
						    plen);
				if (rc == 0)
					rc = idx_commit(fs->ix);
				else
					idx_rollback(fs->ix);
			}
			pthread_mutex_unlock(&fs->lock);
			blocks++;
			if (progress && blocks % 16 == 0)
				progress(parg, s.bytes, 0);
			break;
		}
		case 'X': {
			if (len != 17) {
				rc = -EBADMSG;
				break;
			}
			uint64_t blk = get_le64(p + 9);
			pthread_mutex_lock(&fs->lock);
			rc = idx_begin(fs->ix);
			if (rc == 0) {
				rc = idx_extent_delete_range(fs->ix, get_le64(p + 1), blk, blk + 1);
				if (rc == 0)
					rc = idx_commit(fs->ix);
				else
					idx_rollback(fs->ix);
			}
			pthread_mutex_unlock(&fs->lock);
			drops++;
			break;
		}
		case 'E':
			if (!final || len != 25 || get_le64(p + 1) != blocks ||
			    get_le64(p + 9) != drops) {
				log_error("receive: the stream's end does not match what came before it");
				rc = -EBADMSG;
				break;
			}
			ended = 1;
			if (progress)
				progress(parg, s.bytes, s.bytes);
			break;
		default:
			rc = -EBADMSG;
		}
		if (rc == 0 && final && !ended) {
			rc = -EBADMSG;
		}
	}
	free(cs);
	/* Inode numbers continue after the source's. */
	if (rc == 0) {
		int64_t mine = 0;
		pthread_mutex_lock(&fs->lock);
		rc = idx_super_get(fs->ix, "next_ino", &mine);
		if (rc == -ENOENT)
			rc = 0;
		if (rc == 0 && (uint64_t)mine < next_ino) {
			rc = idx_begin(fs->ix);
			if (rc == 0) {
				rc = idx_super_set(fs->ix, "next_ino", (int64_t)next_ino);
				if (rc == 0)
					rc = idx_commit(fs->ix);
				else
					idx_rollback(fs->ix);
			}
		}
		pthread_mutex_unlock(&fs->lock);
	}
	/* One barrier makes all of it durable, and stores the snapshot. */
	if (rc == 0) {
		pthread_mutex_lock(&fs->gc_mutex);
		rc = jnl_snapshot_create(fs->j, to, NULL);
		pthread_mutex_unlock(&fs->gc_mutex);
		/* The barrier may have stored the changes before the snapshot
		 * object failed: "unchanged" would be false. */
		if (rc < 0 && applied)
			*applied = 1;
	}
	if (rc == 0 && report)
		fprintf(report,
			"receive: %s%s%s: %" PRIu64 " blocks, %" PRIu64 " dropped; stream %" PRIu64
			" bytes\n",
			from, *from ? " -> " : "", to, blocks, drops, s.bytes + STREAM_HEADER);
	stream_free(&s);
	return rc;
}
