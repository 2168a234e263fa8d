/*
** libFuzzer target for tide_tree_parse: a manifest comes from the store, which another tide or a
** damaged disk may have written, so any bytes must be refused cleanly or yield a tree whose every
** path is relative, free of "." and "..", and below a directory listed before it.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tide/blob.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  tide_tree tree;
  tide_err err;
  if (tide_tree_parse((const char *)data, size, &tree, &err) != 0)
    return 0;
  for (size_t i = 0; i < tree.n; i++) {
    const char *p = tree.v[i].path;
    if (p[0] == '/' || strstr(p, "//") || !strcmp(p, "..") || !strncmp(p, "../", 3) ||
        strstr(p, "/../") || (strlen(p) >= 3 && !strcmp(p + strlen(p) - 3, "/..")))
      abort();
  }
  tide_tree_clear(&tree);
  return 0;
}
