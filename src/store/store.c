/* store.c: open a store by URL, choosing the backend from the scheme. */
#include "store/store.h"

#include <errno.h>
#include <string.h>

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

struct store *store_open(const char *url, int create)
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
		log_error("store URL %s: the s3 backend is not available in this build", url);
		errno = EPROTONOSUPPORT;
		return NULL;
	}
	log_error("store URL %s: unknown scheme %.*s (expected file:// or s3://, or a path)", url,
		  (int)(sep - url), url);
	errno = EINVAL;
	return NULL;
}
