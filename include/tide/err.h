/*
** Error codes and messages shared by every host/ module.
**
** Fallible host functions return int: 0 on success, a negative code on failure. System errors are
** the negated errno (the same values as libuv's UV_E*); project errors come from TIDE_ERRNO_MAP
** and sit below -4000 so they never collide with errno values.
**
** A message goes into a caller-owned tide_err (NULL allowed), never into hidden state, so the
** same functions work on thread-pool workers.
*/
#ifndef TIDE_ERR_H
#define TIDE_ERR_H

#include <stddef.h>

#define TIDE_ERRNO_MAP(X)                              \
  X(EINPUT, -4001, "invalid input")                    \
  X(ESQL, -4002, "database error")                     \
  X(ECORRUPT, -4003, "state database is corrupt")      \
  X(EYAML, -4004, "YAML error")                        \
  X(EREGEX, -4005, "regular expression error")         \
  X(ETIMEDOUT, -4006, "operation timed out")           \
  X(ECANCELED, -4007, "operation canceled")            \
  X(ELIMIT, -4008, "limit exceeded")                   \
  X(EREADONLY, -4009, "state database is read-only")   \
  X(EJSON, -4010, "JSON error")                        \
  X(ECONFLICT, -4011, "conflicting state")             \
  X(EINTEGRITY, -4012, "integrity check failed")       \
  X(ECRYPTO, -4013, "cannot decrypt")                  \
  X(ESANDBOX, -4014, "sandbox protection unavailable") \
  X(EGIT, -4015, "git error")

enum {
#define TIDE_ERR_ENUM(name, value, text) TIDE_##name = value,
  TIDE_ERRNO_MAP(TIDE_ERR_ENUM)
#undef TIDE_ERR_ENUM
};

typedef struct tide_err {
  int code;      /* 0, a negated errno, or a TIDE_E* value */
  char msg[256]; /* lowercase, no final period: "open 'x': no such file" */
} tide_err;

/* Clears err (NULL allowed). */
void tide_err_clear(tide_err *err);

/* Fills err (NULL allowed) with code and a printf-formatted message; returns code. */
int tide_err_set(tide_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Stable uppercase name of a code: "ENOENT", "ETIMEDOUT", "ESQL". Never NULL. */
const char *tide_err_name(int code);

/* Human text for a code: strerror for errno values, the map's text for project codes. */
const char *tide_strerror(int code);

#endif
