/* s3_xml.h: the XML answers of S3 that the backend reads, parsed with
 * expat: a ListObjectsV2 result page and an error document.
 *
 * Locking: none; each call uses its own parser and is thread-safe. */
#ifndef ZEROFS_S3_XML_H
#define ZEROFS_S3_XML_H

#include <stddef.h>
#include <stdint.h>

#define S3_XML_TOKEN_MAX 4096 /* longest continuation token accepted */
#define S3_XML_KEY_MAX 1024 /* S3's own limit on key length */

/* Called for each <Contents> of a listing, in document order; a non-zero
 * return stops the parse and is returned by s3_xml_list. */
typedef int (*s3_xml_key_cb)(void *arg, const char *key, uint64_t size);

/* Parse one ListObjectsV2 page.  *truncated is set from <IsTruncated>, and
 * next_token (S3_XML_TOKEN_MAX bytes) from <NextContinuationToken>, "" when
 * absent.  0, the callback's non-zero value, or -EPROTO when the document is
 * not a well-formed listing (or a key or token is too long). */
int s3_xml_list(const char *xml, size_t len, s3_xml_key_cb cb, void *arg, int *truncated,
		char *next_token);

/* Parse an <Error> document: its <Code> and <Message>, each truncated to
 * the buffer.  0, or -EPROTO when xml is not an error document (the buffers
 * are then empty). */
int s3_xml_error(const char *xml, size_t len, char *code, size_t codelen, char *msg, size_t msglen);

#endif
