/*
** Libraries opened on first use. See include/tide/dl.h.
*/
#include "tide/dl.h"

#include <dlfcn.h>
#include <stdio.h>

void *tide_dl_load(const char *soname, const tide_dl_sym *syms, size_t n, char *why,
                   size_t why_size)
{
  void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(why, why_size, "cannot load %s: %s", soname, dlerror());
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    dlerror();
    if (!(*syms[i].slot = dlsym(h, syms[i].name))) {
      const char *e = dlerror();
      snprintf(why, why_size, "cannot load %s: %s", soname, e ? e : syms[i].name);
      for (size_t k = 0; k < n; k++)
        *syms[k].slot = NULL;
      dlclose(h);
      return NULL;
    }
  }
  return h;
}
