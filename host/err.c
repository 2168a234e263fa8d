/*
** Error codes: names and texts for TIDE_ERRNO_MAP and for negated errno values. System names come
** from libuv, which already maps every errno it knows to its symbolic name.
*/
#include "tide/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

void tide_err_clear(tide_err *err)
{
  if (err) {
    err->code = 0;
    err->msg[0] = '\0';
  }
}

int tide_err_set(tide_err *err, int code, const char *fmt, ...)
{
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
  }
  return code;
}

const char *tide_err_name(int code)
{
  switch (code) {
#define TIDE_ERR_NAME(name, value, text) \
  case value:                            \
    return #name;
    TIDE_ERRNO_MAP(TIDE_ERR_NAME)
#undef TIDE_ERR_NAME
    default:
      break;
  }
  return code < 0 && code > -4000 ? uv_err_name(code) : "EUNKNOWN";
}

const char *tide_strerror(int code)
{
  switch (code) {
#define TIDE_ERR_TEXT(name, value, text) \
  case value:                            \
    return text;
    TIDE_ERRNO_MAP(TIDE_ERR_TEXT)
#undef TIDE_ERR_TEXT
    default:
      break;
  }
  return code < 0 && code > -4000 ? uv_strerror(code) : "unknown error";
}
