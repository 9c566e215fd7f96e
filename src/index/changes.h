/* changes.h: what changed in some tables of one SQLite connection, as a
 * changeset in the format of SQLite's session extension.
 *
 * The session extension records the same thing, but its changeset call
 * prepares a PRAGMA table_info and a SELECT again for every changed table,
 * and a session cannot be emptied, only deleted and made anew (a third
 * prepare per table at its first change).  The journal takes a changeset at
 * every barrier, under the filesystem's lock: those prepares were most of a
 * barrier's index work.  This recorder prepares once, at chg_new, and keeps
 * its memory from one take to the next.
 *
 * Semantics are the session extension's: the pre-update hook notes each
 * row's primary key and its values before the first change since the last
 * chg_clear; chg_changeset reads the rows as they are now and writes an
 * INSERT (absent before, present now), a DELETE (present before, absent
 * now) or an UPDATE with the columns that differ, and nothing for a row that
 * is back where it was.  A rolled-back change therefore leaves no trace.  A
 * change to a row's primary key is a DELETE of the old key and an INSERT of
 * the new one.
 *
 * The recorder owns the connection's pre-update hook (SQLite has one slot;
 * a sqlite3_session on the same connection would take it).  Not thread-safe:
 * the connection's user serialises every call. */
#ifndef ZEROFS_CHANGES_H
#define ZEROFS_CHANGES_H

#include <sqlite3.h>
#include <stddef.h>

struct chg;

/* Record changes to tables (of database "main"; each must exist and have a
 * PRIMARY KEY) of db.  NULL with errno on failure. */
struct chg *chg_new(sqlite3 *db, const char *const *tables, size_t ntables);

/* Remove the hook and free everything. */
void chg_free(struct chg *c);

/* Stop (0) or resume (1) recording: changes made meanwhile are not recorded. */
void chg_enable(struct chg *c, int on);

/* 1 when no change was recorded since the last chg_clear. */
int chg_isempty(const struct chg *c);

/* The changeset of every change recorded since the last chg_clear: *cs is
 * malloc'd (NULL, *len 0 when nothing differs).  The record is kept: the
 * caller clears it once the changeset is safe.  -ENOMEM, or -EIO when SQLite
 * fails or a change could not be recorded (an error that stays: a changeset
 * missing a change would lose it). */
int chg_changeset(struct chg *c, void **cs, size_t *len);

/* Forget what was recorded.  The memory it took is kept for the next
 * changes, up to what chg_set_keep says (16 MiB unless set). */
void chg_clear(struct chg *c);
void chg_set_keep(struct chg *c, size_t bytes);

#endif
