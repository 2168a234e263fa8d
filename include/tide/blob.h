/*
** Content-addressed blobs and directory trees for the artifact store.
**
** Layout under a store root (normally $TIDE_HOME/artifacts):
**   blobs/ab/abcdef...   one file per distinct content, named by its sha256 in lowercase hex
**   tmp/                 files being written; a name never becomes a blob until it is complete
**   cache/               stat caches of put_tree (a hint only: losing them costs a re-hash)
**
** Writes go to a temporary file in tmp/, are fsynced (or, for a tree, flushed with one syncfs),
** and are renamed into blobs/ only then, so a reader or a crash never sees part of a blob. Two
** processes writing the same content both rename an identical file into place, which is harmless,
** and a write of content already stored replaces the blob there, which repairs a damaged one.
** Reads check what they hand out and fail with TIDE_EINTEGRITY when the content does not match,
** so a blob corrupted on disk is never returned silently.
**
** Two digests: SHA-256 names a blob (checked when it is stored and by tide_blob_verify), and
** XXH3-128, computed in the same pass when a file is stored, lets a read check the content at
** memory speed instead of paying a second SHA-256 pass. XXH3-128 catches accidental damage (bit
** rot, truncation, torn writes) with odds of 2^-128 of missing it; it is no defence against
** someone who can write the blob files, but such a writer can rewrite the index as well. Reads
** given no XXH3-128 (blobs recorded before it existed, tree members, streams) check SHA-256.
**
** Hashing is OpenSSL's SHA-256 (which uses the CPU's SHA extensions) and libxxhash. Large copies
** hash on one thread while a second reads and writes. Everything here is synchronous and
** reentrant with no global state besides a once-initialised digest handle, so callers run it on
** the thread pool. libcrypto is opened by the first SHA-256, not at start-up: when it cannot be
** loaded, every function that would compute one fails with TIDE_ECRYPTO naming the library.
**
** NOTE: a write beyond RLIMIT_FSIZE raises SIGXFSZ, which kills the process unless it is ignored;
** the Lua binding ignores it so that such a write fails with EFBIG instead.
*/
#ifndef TIDE_BLOB_H
#define TIDE_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "tide/err.h"

#define TIDE_BLOB_HEX_LEN 64
#define TIDE_BLOB_XXH_LEN 32

typedef struct tide_blob_info {
  char hex[TIDE_BLOB_HEX_LEN + 1];  /* sha256 of the content */
  char xxh3[TIDE_BLOB_XXH_LEN + 1]; /* XXH3-128 of the content, lowercase hex (the read check) */
  uint64_t size;
  int stored; /* 1 when this call added the blob, 0 when it was already there */
} tide_blob_info;

/* 1 when s is 64 lowercase hex digits (a blob name), else 0. */
int tide_blob_hex_valid(const char *s);

/* 1 when s is 32 lowercase hex digits (an XXH3-128), else 0. */
int tide_blob_xxh_valid(const char *s);

/* Creates root, root/blobs, root/tmp and root/cache when missing. */
int tide_blob_init(const char *root, tide_err *err);

/* Writes root/blobs/xx/hex into buf (cap bytes); -ENAMETOOLONG when it does not fit. */
int tide_blob_path(const char *root, const char *hex, char *buf, size_t cap);

/* 1 when the blob is present, 0 when not, negative on other failures. */
int tide_blob_exists(const char *root, const char *hex, tide_err *err);

/*
** Stores the content of the regular file src (symbolic links followed). When expect is not NULL
** and the content's sha256 differs, nothing is stored and TIDE_EINTEGRITY is returned.
*/
int tide_blob_put_file(const char *root, const char *src, const char *expect, tide_blob_info *out,
                       tide_err *err);

/* Stores len bytes of data (a manifest, a small asset). */
int tide_blob_put_mem(const char *root, const void *data, size_t len, tide_blob_info *out,
                      tide_err *err);

/*
** Copies blob hex to dst (replacing it atomically: temporary file in dst's directory, rename),
** with the permission bits mode, verifying the content on the way: against xxh3 (the XXH3-128
** recorded when it was stored) when not NULL, else against its sha256. On TIDE_EINTEGRITY or any
** other failure dst is left as it was. The copy is not fsynced.
*/
int tide_blob_get_file(const char *root, const char *hex, const char *xxh3, const char *dst,
                       unsigned mode, tide_err *err);

/* Reads a whole blob into *data (malloc'd, NUL-terminated; free() it), verified. */
int tide_blob_read(const char *root, const char *hex, char **data, size_t *len, tide_err *err);

/* Re-hashes blob hex: 0 when sound, TIDE_EINTEGRITY when its content does not match its name. */
int tide_blob_verify(const char *root, const char *hex, uint64_t *size, tide_err *err);

/*
** A streaming reader. read returns the number of bytes put in buf, 0 at the end once the content
** has been verified, or a negative code; a mismatch is reported as TIDE_EINTEGRITY by the read
** that reaches the end, so a consumer must treat what it got as void in that case.
*/
typedef struct tide_blob_reader tide_blob_reader;
int tide_blob_open(const char *root, const char *hex, tide_blob_reader **out, tide_err *err);
long tide_blob_reader_read(tide_blob_reader *r, void *buf, size_t cap, tide_err *err);
uint64_t tide_blob_reader_size(const tide_blob_reader *r);
void tide_blob_reader_close(tide_blob_reader *r);

/* A list of blob names; zero-initialise, release with tide_blob_names_clear(). */
typedef struct tide_blob_names {
  char (*v)[TIDE_BLOB_HEX_LEN + 1];
  size_t n, cap;
} tide_blob_names;

int tide_blob_names_add(tide_blob_names *names, const char *hex);
void tide_blob_names_clear(tide_blob_names *names);
/* Sorts and removes duplicates, so tide_blob_names_has can search. */
void tide_blob_names_sort(tide_blob_names *names);
int tide_blob_names_has(const tide_blob_names *sorted, const char *hex);

typedef struct tide_blob_gc_stats {
  size_t kept, removed, tmp_removed, cache_removed;
  uint64_t bytes_removed;
} tide_blob_gc_stats;

/*
** The store lock (root/lock, flock(2)). A writer holds it shared from the first blob it writes or
** finds until its index commit is done; gc holds it exclusive from reading the index until the
** sweep ends. So gc never removes a blob that a put has just found stored but not yet recorded,
** and never sees the temporary files of a live put. flags: TIDE_BLOB_LOCK_EXCLUSIVE,
** TIDE_BLOB_LOCK_NOWAIT (then -EWOULDBLOCK when taken). Blocks otherwise: run it on the pool.
** Returns the descriptor to pass to tide_blob_unlock.
*/
enum {
  TIDE_BLOB_LOCK_EXCLUSIVE = 1 << 0,
  TIDE_BLOB_LOCK_NOWAIT = 1 << 1,
};
int tide_blob_lock(const char *root, unsigned flags, tide_err *err);
void tide_blob_unlock(int fd);

/*
** Removes every blob that is not in keep (sorted) and was written more than grace seconds ago,
** temporary files older than grace, and the stat caches of cache/ whose source directory is gone
** or that no put has used for grace seconds. Whoever drops a blob's last reference keeps it in
** keep for grace seconds more (the index knows when; the file's time does not). With dry_run only
*counts. The caller holds the store lock
** exclusive across reading the index that gave keep and this sweep.
*/
int tide_blob_gc(const char *root, const tide_blob_names *keep, int64_t grace, int dry_run,
                 tide_blob_gc_stats *stats, tide_err *err);

/* ---- directory trees ------------------------------------------------------------------------
**
** A tree is stored as a manifest blob listing its entries, sorted by path, one per line:
**   tide-tree 1
**   d <mode> <path>
**   f <mode> <size> <sha256> <path>
**   l <path> <target>
** fields separated by one tab; in paths and targets the bytes '%', tab, newline, carriage
** return and other control bytes are written as %XX. Modes are octal permission bits (07777).
** A path is relative, its segments are never empty, "." or "..", and every parent of an entry
** is a "d" entry listed before it: nothing in a tree can lead outside it when restored. Link
** targets are kept verbatim and never followed.
*/

typedef enum tide_tree_kind {
  TIDE_TREE_DIR = 'd',
  TIDE_TREE_FILE = 'f',
  TIDE_TREE_LINK = 'l',
} tide_tree_kind;

typedef struct tide_tree_entry {
  tide_tree_kind kind;
  unsigned mode;
  uint64_t size;
  char hex[TIDE_BLOB_HEX_LEN + 1];
  char xxh3[TIDE_BLOB_XXH_LEN + 1]; /* files: the read check when not empty, else hex */
  char *path;                       /* owned by the tree */
  char *target;                     /* links only; owned by the tree */
} tide_tree_entry;

typedef struct tide_tree {
  tide_tree_entry *v;
  size_t n, cap;
} tide_tree;

void tide_tree_clear(tide_tree *tree);

/* Parses and validates a manifest (rules above); TIDE_EINPUT names the line on bad input. */
int tide_tree_parse(const char *text, size_t len, tide_tree *out, tide_err *err);

typedef struct tide_tree_stats {
  size_t files, dirs, links, stored; /* stored: file blobs this call added */
  uint64_t bytes;                    /* total size of the files */
} tide_tree_stats;

/*
** Stores every regular file below src as a blob and writes the manifest text into *manifest
** (malloc'd; free() it). Symbolic links are recorded, never followed; FIFOs, sockets and devices
** are refused with TIDE_EINPUT. Blob data and renames are made durable (syncfs) before it
** returns. A stat cache under root/cache lets a second put of an unchanged file skip reading it.
** threads: number of worker threads (0: a default).
*/
int tide_tree_put(const char *root, const char *src, int threads, char **manifest, size_t *len,
                  tide_tree_stats *stats, tide_err *err);

/*
** Restores a parsed tree into dst, which must not exist or be an empty directory; nothing else is
** ever replaced (TIDE_EEXIST, -EEXIST). A new dst is built in a temporary sibling
** "<dst>.tide-tmp-<pid>-<n>" and renamed into place; an existing empty directory (".") is filled
** from a temporary inside it, its top-level entries moved in at the end. On failure dst does not
** appear (or stays empty). Temporaries left by a killed tide are removed by the next restore into
** the same place once their process is gone. Every file is verified (against its xxh3 when set,
** else its sha256). Trees keep no times, owners, extended attributes or hard links.
*/
int tide_tree_get(const char *root, const tide_tree *tree, const char *dst, int threads,
                  tide_tree_stats *stats, tide_err *err);

/*
** Appends one asset of a version to tree, so that a version of several assets restores as one
** tree: a file asset (sub NULL: hex, xxh3 or NULL, size, mode) or a tree asset (sub, its parsed
** manifest, placed under a directory of that name with mode). name must be one path segment
** without control characters, not already in tree (TIDE_EINPUT otherwise); tree is unchanged on
** failure.
*/
int tide_tree_add_asset(tide_tree *tree, const char *name, const tide_tree *sub, unsigned mode,
                        const char *hex, const char *xxh3, uint64_t size, tide_err *err);

#endif
