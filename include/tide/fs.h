/*
** File system helpers that libuv (and so tide.uv) does not have: glob matching and expansion,
** tree walks, recursive create, remove and copy, and atomic replacement of a file.
**
** Everything here is synchronous and reentrant, with no global state, so the binding runs the
** long operations (glob, walk, rm_r, copy_tree, write_atomic) on the libuv thread pool.
** Failures return a negated errno with "op 'path': strerror" in err (the path that failed,
** which inside a tree may be below the one given).
**
** Glob rules (tide_fs_match and tide_fs_glob):
** - a pattern is split at '/'; empty and "." segments are dropped, a leading '/' makes it absolute
**   and only matches absolute paths;
** - each segment is matched against one path segment with fnmatch(3): * ? [...] and \ escapes;
** - a segment that is exactly "**" matches zero or more whole segments;
** - hidden names: unless TIDE_FS_HIDDEN is given, no wildcard (* ? [...] or **) matches a name
**   that starts with '.'; a segment that starts with a literal '.' matches them;
** - "." and ".." are only matched by the same literal segment, never by a wildcard;
** - matching is lexical: "a/../b" is three segments, not "b".
*/
#ifndef TIDE_FS_H
#define TIDE_FS_H

#include <stddef.h>
#include <sys/types.h>

#include "tide/err.h"

enum {
  TIDE_FS_HIDDEN = 1 << 0, /* wildcards also match names starting with '.' */
};

typedef enum tide_fs_type {
  TIDE_FS_UNKNOWN = 0,
  TIDE_FS_FILE,
  TIDE_FS_DIR,
  TIDE_FS_LINK,
  TIDE_FS_FIFO,
  TIDE_FS_SOCKET,
  TIDE_FS_CHAR,
  TIDE_FS_BLOCK,
} tide_fs_type;

/* "file", "directory", "link", "fifo", "socket", "char", "block" or "unknown" (as luv names them).
 */
const char *tide_fs_type_name(tide_fs_type type);

typedef struct tide_fs_entry {
  char *path; /* owned by the list */
  tide_fs_type type;
} tide_fs_entry;

/* A growable list of entries; zero-initialise, release with tide_fs_list_clear(). */
typedef struct tide_fs_list {
  tide_fs_entry *v;
  size_t n, cap;
} tide_fs_list;

/* Frees every path and the array; the list is empty and reusable afterwards. */
void tide_fs_list_clear(tide_fs_list *list);

/* 1 when path matches the glob pattern (rules above), else 0. Both strings are borrowed. */
int tide_fs_match(const char *pattern, const char *path, unsigned flags);

typedef struct tide_fs_glob_opts {
  const char *cwd;            /* relative patterns are expanded here; NULL: the process's cwd */
  const char *const *exclude; /* patterns; a match is dropped and an excluded directory pruned */
  size_t nexclude;
  unsigned flags; /* TIDE_FS_HIDDEN (also applies to exclude patterns) */
} tide_fs_glob_opts;

/*
** Appends to out every existing path that matches pattern, sorted bytewise, each written as the
** pattern would spell it (relative to cwd for a relative pattern, never with cwd prefixed).
** A pattern ending in '/' yields directories only. Symbolic links are matched as entries but
** "**" never descends into a linked directory, so link loops cannot trap it. Directories that
** cannot be read are skipped, as a shell does. A pattern without wildcards yields itself when
** it exists. opts may be NULL.
*/
int tide_fs_glob(const char *pattern, const tide_fs_glob_opts *opts, tide_fs_list *out,
                 tide_err *err);

/*
** Appends every entry below dir (not dir itself), depth first, each directory's entries sorted
** bytewise and listed before their contents. Paths are dir + "/" + relative path. Symbolic links
** are reported as links and never followed. Subdirectories that cannot be read are listed but not
** entered; only an unreadable dir fails.
*/
int tide_fs_walk(const char *dir, tide_fs_list *out, tide_err *err);

/* mkdir -p: creates path and its missing parents with mode (before the umask). 0 if it exists. */
int tide_fs_mkdir_p(const char *path, unsigned mode, tide_err *err);

/*
** rm -r: removes path and, for a directory, everything below it. Symbolic links are removed,
** never followed, also when path itself is one (trailing slashes are ignored). Directories
** without write permission that the caller owns are made writable first. Refuses with -EINVAL
** "", "/" (however spelled) and paths whose last segment is "." or "..". A missing path is
** -ENOENT.
*/
int tide_fs_rm_r(const char *path, tide_err *err);

/*
** cp -a, minus ownership: copies src to dst, which must not exist. Directories, regular files
** (contents, mode bits and times), symbolic links (as links, with the same target) and FIFOs are
** copied; sockets and device files are skipped. When dst lies inside src, the copy does not
** copy itself.
*/
int tide_fs_copy_tree(const char *src, const char *dst, tide_err *err);

/*
** Replaces path with data atomically: writes a temporary file in the same directory, fsyncs it,
** renames it over path and fsyncs the directory. The file gets mode when mode >= 0, else the mode
** of the file it replaces, else 0666 less the umask. A symbolic link at path is replaced by the
** file, not followed. On failure path is unchanged and the temporary file is gone.
*/
int tide_fs_write_atomic(const char *path, const void *data, size_t len, int mode, tide_err *err);

/* Writes all of buf to fd, through EINTR and short writes: 0, or a negative errno. Only system
** calls: a child between clone and exec may use it. */
int tide_fs_write_all(int fd, const void *buf, size_t n);

/* Reads n bytes from fd, fewer only at its end: the count, or a negative errno. Only system
** calls, as tide_fs_write_all. */
ssize_t tide_fs_read_full(int fd, void *buf, size_t n);

/* Reads a whole file into *data (malloc'd, NUL-terminated, free() it) and its size into *len. */
int tide_fs_read(const char *path, char **data, size_t *len, tide_err *err);

/* Creates or truncates path (0666 less the umask) and writes data. Not atomic. */
int tide_fs_write(const char *path, const void *data, size_t len, tide_err *err);

/*
** 1 when path names something (symbolic links followed: a dangling one is 0), 0 when it does not
** (ENOENT, ENOTDIR, ELOOP), or a negative code for other failures such as EACCES.
*/
int tide_fs_exists(const char *path, tide_err *err);

#endif
