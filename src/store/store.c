/* store.c: open a store by URL, choosing the backend from the scheme. */
#include "store/store.h"

#include <errno.h>
#include <string.h>

#include "cfg.h"
#include "log.h"

/* "file://" URLs name a local path; an authority other than empty or
 * "localhost" would mean another machine, which we cannot reach. */
static const char *file_url_path(const char *url)
{
	const char *rest = url + strlen("file://");

	if (rest[0] == '/')
		return rest;
	if (strncmp(rest, "localhost/", strlen("localhost/")) == 0)
		return rest + strlen("localhost");
	return NULL;
}

static struct store *open_url(const char *url, const struct cfg *cfg, int create)
{
	const char *sep = strstr(url, "://");
	const char *path;

	if (!sep) {
		if (!*url) {
			log_error("empty store URL");
			errno = EINVAL;
			return NULL;
		}
		return store_dir_open(url, create);
	}
	if (strncmp(url, "file://", strlen("file://")) == 0) {
		path = file_url_path(url);
		if (!path) {
			log_error("store URL %s: expected file:///absolute/path", url);
			errno = EINVAL;
			return NULL;
		}
		return store_dir_open(path, create);
	}
	if (strncmp(url, "s3://", strlen("s3://")) == 0) {
		if (cfg)
			return store_s3_open(url, cfg);
		log_error("store URL %s: an s3 store is opened with its settings "
			  "(store_open_cfg)", url);
		errno = EINVAL;
		return NULL;
	}
	log_error("store URL %s: unknown scheme %.*s (expected file:// or s3://, or a path)", url,
		  (int)(sep - url), url);
	errno = EINVAL;
	return NULL;
}

struct store *store_open(const char *url, int create)
{
	return open_url(url, NULL, create);
}

struct store *store_open_cfg(const struct cfg *cfg, int create)
{
	if (!cfg->store) {
		log_error("no store URL is configured");
		errno = EINVAL;
		return NULL;
	}
	struct store *st = open_url(cfg->store, cfg, create);

	if (st && cfg->store_faults && *cfg->store_faults)
		return store_fault_open(st, cfg->store_faults);
	return st;
}

int store_key_valid(const char *key)
{
	size_t len = strlen(key);
	const char *comp = key;

	if (len == 0 || len > STORE_KEY_MAX)
		return 0;
	for (const char *p = key;; p++) {
		if (*p != '/' && *p != '\0') {
			if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
				return 0;
			continue;
		}
		size_t clen = (size_t)(p - comp);

		if (clen == 0 || (clen == 1 && comp[0] == '.') ||
		    (clen == 2 && comp[0] == '.' && comp[1] == '.'))
			return 0;
		if (*p == '\0')
			return 1;
		comp = p + 1;
	}
}
