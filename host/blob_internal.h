/*
** Helpers shared by host/blob.c and host/tree.c; not a public contract.
*/
#ifndef TIDE_BLOB_INTERNAL_H
#define TIDE_BLOB_INTERNAL_H

#include <stdint.h>
#include <sys/stat.h>

#include "tide/blob.h"

typedef struct blob_hash blob_hash;

/*
** SHA-256 comes from libcrypto, opened by the first call here rather than linked (see blob.c). 0
** when it is usable, else TIDE_ECRYPTO naming the library and the loader's reason; the first call
** settles it for the process. A function that starts a SHA-256 calls this first, so that the
** failure is reported as what it is: blob_hash_new also returns NULL without libcrypto, which its
** callers would report as out of memory.
*/
int blob_hash_ready(tide_err *err);
blob_hash *blob_hash_new(void);
void blob_hash_update(blob_hash *h, const void *p, size_t n);
void blob_hash_final(blob_hash *h, char hex[TIDE_BLOB_HEX_LEN + 1]);
void blob_hash_free(blob_hash *h);
/* 0, or blob_hash_ready's error. */
int blob_hash_mem(const void *p, size_t n, char hex[TIDE_BLOB_HEX_LEN + 1], tide_err *err);

/* Fills err with "op 'path': strerror(e)" and returns -e. */
int blob_fail(tide_err *err, const char *op, const char *path, int e);

/* XXH3-128, the read check. */
typedef struct XXH3_state_s blob_xxh;
blob_xxh *blob_xxh_new(void);
void blob_xxh_update(blob_xxh *x, const void *p, size_t n);
void blob_xxh_final(blob_xxh *x, char hex[TIDE_BLOB_XXH_LEN + 1]);
void blob_xxh_free(blob_xxh *x);
void blob_xxh_mem(const void *p, size_t n, char hex[TIDE_BLOB_XXH_LEN + 1]);

/*
** Copies in to out (-1: only hash) while feeding h (SHA-256) and x (XXH3-128), either of which
** may be NULL. writeback: the copy ends in an fsync, so start writing back as it goes. On failure
** returns a negated errno and sets *which to 'r' (reading in) or 'w' (writing out).
*/
int blob_copy_hash(int in, int out, uint64_t size_hint, int writeback, blob_hash *h, blob_xxh *x,
                   uint64_t *size, char *which);

/* mkostemp in dir; returns the descriptor, the path in path. */
int blob_tmp_open(const char *dir, char *path, size_t cap, tide_err *err);

/*
** A new read-only temporary file in dir with a name unique to this process and thread, made
** without getrandom or an extra chmod: the cheap variant for the many small files of a tree.
*/
int blob_tmp_create(const char *dir, char *path, size_t cap, tide_err *err);

/* Renames the complete file tmp to blob hex, creating the fan-out directory when needed. */
int blob_rename(const char *root, const char *tmp, const char *hex, tide_err *err);

/* Renames the complete file tmp to blob hex, replacing a blob already there (it may be damaged). */
int blob_publish(const char *root, const char *tmp, const char *hex, int durable, int *stored,
                 tide_err *err);

/* 1 when blob hex is a regular file holding exactly len bytes of data (read and compared). */
int blob_holds(const char *root, const char *hex, const void *data, size_t len);

/*
** Restores write through temporaries named "<base>.tide-tmp-<pid>-<n>" next to their destination
** (dir/base), so that a killed tide leaves debris that the next restore there recognises:
** blob_clean_stale removes those of dir whose owner process is gone. blob_sibling_tmp cleans, then
** creates a new one (a directory when is_dir: returns 0; else a file: returns its descriptor).
** With base "" the temporaries are ".tide-tmp-..." inside dir.
*/
void blob_clean_stale(const char *dir, const char *base);
int blob_sibling_tmp(const char *dir, const char *base, int is_dir, char *path, size_t cap,
                     tide_err *err);
/* Splits path (trailing slashes ignored) into its directory ("." when none) and last name. */
void blob_split_path(const char *path, char *dir, size_t dcap, char *base, size_t bcap);
/* rename(2) that fails with -EEXIST instead of replacing to; 0 or a negated errno. */
int blob_rename_noreplace(const char *from, const char *to);

/* Opens blob hex for reading (fails with ENOENT naming the blob when it is missing). */
int blob_open_read(const char *root, const char *hex, struct stat *st, tide_err *err);

/*
** Copies blob hex to outfd, verifying it against xxh3 when not NULL, else against hex; outname
** names outfd in errors.
*/
int blob_copy_out(const char *root, const char *hex, const char *xxh3, int outfd,
                  const char *outname, tide_err *err);

/* kind: "content hashes to" (sha256) or "XXH3-128 is"; got: what was computed. */
int blob_corrupt(tide_err *err, const char *hex, const char *kind, const char *got);

#endif
