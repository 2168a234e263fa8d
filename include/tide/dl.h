/*
** Libraries opened on first use instead of linked: libgit2 (host/git.c) and libcrypto
** (host/blob.c). Loading them, and what they pull in, would cost every start of tide a few
** milliseconds; most runs use neither. Each user keeps a table of typed function pointers
** (__typeof__ of the library's own declaration, so calls stay checked) and lists its slots
** for tide_dl_load.
*/
#ifndef TIDE_DL_H
#define TIDE_DL_H
#include <stddef.h>

/* A function to resolve: its name and where its address goes. */
typedef struct tide_dl_sym {
  const char *name;
  void **slot;
} tide_dl_sym;

/*
** A library's functions are listed once, as LIST(X, table) calling X(table, name) for each.
** TIDE_DL_SLOT declares a table member typed from the function's own declaration:
**   static struct { LIST(TIDE_DL_SLOT, _) } lib;
** TIDE_DL_SYM makes the tide_dl_sym entries that fill it:
**   static const tide_dl_sym syms[] = {LIST(TIDE_DL_SYM, lib)};
*/
/* clang-format off */
#define TIDE_DL_SLOT(table, name) __typeof__(name) *name;
#define TIDE_DL_SYM(table, name) {#name, (void **)&(table).name},
/* clang-format on */

/*
** Opens soname (RTLD_NOW | RTLD_LOCAL) and fills every slot. Returns the handle, or NULL with
** every slot cleared, the library closed and "cannot load SONAME: reason" in why. Not
** thread-safe: call it once, under the caller's pthread_once.
*/
void *tide_dl_load(const char *soname, const tide_dl_sym *syms, size_t n, char *why,
                   size_t why_size);

#endif
