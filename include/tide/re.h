/*
** Regular expressions on PCRE2 (8-bit code units), with JIT where the platform has it and a
** process-wide compile cache.
**
** tide_re_compile() looks the pattern and flags up in an LRU cache of TIDE_RE_CACHE_SIZE compiled
** patterns and compiles only on a miss. A compiled pattern is reference counted and immutable, so
** any number of threads may match with it at once; each match needs its own tide_re_match.
**
** Matching is bounded: every match runs under a match limit, a depth limit and a heap limit, so a
** pattern that backtracks catastrophically fails with TIDE_ELIMIT instead of hanging. PCRE2
** counts the match limit per start position, so the total work of one search is at most the
** limit times the subject length. Subjects
** and patterns are byte strings with explicit lengths; NUL bytes are ordinary characters.
**
** Every function here may be called from any thread.
*/
#ifndef TIDE_RE_H
#define TIDE_RE_H

#include <stddef.h>

#include "tide/err.h"

#define TIDE_RE_CACHE_SIZE 256          /* compiled patterns kept by the LRU cache */
#define TIDE_RE_MATCH_LIMIT 1000000     /* pcre2_set_match_limit: backtracking steps per start */
#define TIDE_RE_DEPTH_LIMIT 10000000    /* pcre2_set_depth_limit: the heap limit binds first */
#define TIDE_RE_HEAP_LIMIT (128 * 1024) /* pcre2_set_heap_limit, in KiB: 128 MiB per match */
#define TIDE_RE_JIT_STACK (8 * 1024 * 1024) /* bytes of JIT stack per thread, at most */

/* Compile flags; tide_re_flags() maps the letters of the Lua API onto them. */
enum {
  TIDE_RE_CASELESS = 1 << 0,  /* i */
  TIDE_RE_MULTILINE = 1 << 1, /* m: ^ and $ match at line breaks */
  TIDE_RE_DOTALL = 1 << 2,    /* s: . matches a newline */
  TIDE_RE_EXTENDED = 1 << 3,  /* x: whitespace and # comments in the pattern are ignored */
  TIDE_RE_UTF = 1 << 4,       /* u: UTF-8 pattern and subjects, Unicode \w \d \s and classes */
  TIDE_RE_NOCAPTURE = 1 << 5, /* n: plain (...) does not capture; named groups still do */
  TIDE_RE_ANCHORED = 1 << 6,  /* A: the match must start at the start offset */
  TIDE_RE_UNGREEDY = 1 << 7,  /* U: quantifiers are lazy unless followed by ? */
};

/* Exec flags for tide_re_exec(). */
enum {
  TIDE_RE_NOTEMPTY_ATSTART = 1 << 0, /* an empty match at the start offset does not count */
  TIDE_RE_EXEC_ANCHORED = 1 << 1,    /* this match must start at the start offset */
  TIDE_RE_NO_UTF_CHECK = 1 << 2,     /* the subject was already checked by an earlier exec */
};

/* What an unset capture group's offsets are in the ovector (PCRE2_UNSET). */
#define TIDE_RE_UNSET (~(size_t)0)

typedef struct tide_re tide_re;
typedef struct tide_re_match tide_re_match;

/*
** Parses a flag string ("imsxunAU", any order, repeats allowed) into TIDE_RE_* bits. Returns 0, or
** TIDE_EINPUT with "re: unknown flag 'q'" in err.
*/
int tide_re_flags(const char *s, size_t len, unsigned *flags, tide_err *err);

/*
** Compiles pattern (len bytes, borrowed) with flags, or takes it from the cache. On success
** returns 0 and stores a new reference in *out (release it with tide_re_release()). On failure
** returns TIDE_EREGEX with "re: bad pattern at offset N: reason" in err, or -ENOMEM.
*/
int tide_re_compile(const char *pattern, size_t len, unsigned flags, tide_re **out, tide_err *err);

/* Takes another reference to re; returns re. */
tide_re *tide_re_retain(tide_re *re);

/* Drops a reference; the pattern is freed once the cache and every holder have let go. */
void tide_re_release(tide_re *re);

/* The pattern as given (borrowed, valid while re is), its length and its flags. */
const char *tide_re_pattern(const tide_re *re, size_t *len);
unsigned tide_re_get_flags(const tide_re *re);

/* Number of capture groups (not counting group 0). */
int tide_re_ngroups(const tide_re *re);

/*
** Named groups, i from 0 to tide_re_nnames()-1. Stores the group number in *group and returns
** the name (NUL-terminated, borrowed, valid while re is). When two groups share a name (with
** (?J)), each appears once per group.
*/
int tide_re_nnames(const tide_re *re);
const char *tide_re_name(const tide_re *re, int i, int *group);

/* The number of the group called name, or a negative value when there is none (or it is dup). */
int tide_re_group_number(const tide_re *re, const char *name);

/* True when subjects must be advanced by UTF-8 characters and CRLF counts as one newline. */
int tide_re_is_utf(const tide_re *re);
int tide_re_crlf_is_newline(const tide_re *re);

/* A match buffer big enough for every group of re. NULL when out of memory. */
tide_re_match *tide_re_match_new(const tide_re *re);
void tide_re_match_free(tide_re_match *m);

/*
** Matches re against subject[0..len) starting at byte offset start (<= len), with exec flags.
** m must come from tide_re_match_new() for re (or a pattern with at least as many groups).
** Returns 1 on a match (offsets in tide_re_ovector), 0 when there is none, or a negative code:
** TIDE_ELIMIT when a match, depth or heap limit was hit, TIDE_EREGEX for an invalid UTF-8
** subject or an offset inside a character (err says which and where), -ENOMEM.
*/
int tide_re_exec(const tide_re *re, const char *subject, size_t len, size_t start, unsigned xflags,
                 tide_re_match *m, tide_err *err);

/*
** The offsets of the last successful tide_re_exec on m: pairs (start, end) for groups 0..n, where
** n is tide_re_ngroups(). An unset group has both offsets TIDE_RE_UNSET. Borrowed from m.
*/
const size_t *tide_re_ovector(const tide_re_match *m);

/*
** Finds the next match for an iteration over subject (gmatch, gsub, split) with Perl's rules:
** after an empty match at p, the next match may not be empty at p and, failing that, the search
** moves on one character (a UTF-8 character in UTF mode, CRLF as one in CRLF newline modes).
** *pos is the offset to search from and *last_empty tells whether the previous match was empty
** (both 0 to begin). *checked (0 to begin) remembers that the subject passed the UTF check.
** Returns like tide_re_exec and on a match updates *pos and *last_empty for the next call.
*/
int tide_re_next(const tide_re *re, const char *subject, size_t len, size_t *pos, int *last_empty,
                 int *checked, tide_re_match *m, tide_err *err);

/* Cache statistics, for tests: entries held and compiles done since start. */
void tide_re_cache_stats(size_t *entries, size_t *compiles);

/* Empties the cache (patterns still referenced elsewhere live on). For tests and shutdown. */
void tide_re_cache_clear(void);

#endif
