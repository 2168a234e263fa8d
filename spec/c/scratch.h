/*
** A scratch directory for a C test, under $TMPDIR (default /tmp), and paths and files in it.
** Include after cmocka.h. scratch_make() in a setup, scratch_remove() in its teardown.
*/
#ifndef TIDE_SPEC_SCRATCH_H
#define TIDE_SPEC_SCRATCH_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "tide/fs.h"

static char scratch_root[PATH_MAX];

/* Makes $TMPDIR/tide-NAME-XXXXXX as scratch_root; 0 or -1. */
static inline int scratch_make(const char *name)
{
  const char *tmp = getenv("TMPDIR");
  snprintf(scratch_root, sizeof scratch_root, "%s/tide-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp",
           name);
  return mkdtemp(scratch_root) ? 0 : -1;
}

/* Removes scratch_root and all below it (with tide_fs_rm_r, which this also exercises). */
static inline int scratch_remove(void)
{
  tide_err err;
  chmod(scratch_root, 0700);
  if (tide_fs_rm_r(scratch_root, &err) != 0) {
    fprintf(stderr, "cleanup: %s\n", err.msg);
    return -1;
  }
  return 0;
}

/* scratch_root/rel, in one of four rotating buffers (so a call may take a few of them). */
static inline const char *P(const char *rel)
{
  static char buf[4][2 * PATH_MAX];
  static int i;
  i = (i + 1) % 4;
  snprintf(buf[i], sizeof buf[i], "%s/%s", scratch_root, rel);
  return buf[i];
}

/* Writes text to scratch_root/rel with mode. */
static inline void put(const char *rel, const char *text, mode_t mode)
{
  FILE *f = fopen(P(rel), "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(chmod(P(rel), mode), 0);
}

#endif
