/*
** host/git.c without the network: URL redaction (hostile URLs included), the known_hosts matcher,
** and init, commit, resolve, log, changed paths, tags, status and checkout on repositories in a
** directory under TMPDIR, with the error codes for a missing path, a directory that is not a
** repository and a revision that does not resolve.
*/
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tide/git.h"

#include "scratch.h"

static int setup(void **state)
{
  (void)state;
  return scratch_make("git");
}

static int teardown(void **state)
{
  (void)state;
  return scratch_remove();
}

static void test_redact(void **state)
{
  (void)state;
  char out[256];
  static const char *const cases[][2] = {
      {"https://u:pw@h/r.git", "https://u:***@h/r.git"},
      {"https://u:p@w@h:8443/r", "https://u:***@h:8443/r"},
      {"https://tok@h/r", "https://tok@h/r"},
      {"https://h/r?a=b@c:d", "https://h/r?a=b@c:d"},
      {"git@h:org/r.git", "git@h:org/r.git"},
      {"/srv/git/r", "/srv/git/r"},
      {"ssh://u:@h/r", "ssh://u:***@h/r"},
      {"://:@", "://:***@"},
      {"", ""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    assert_string_equal(tide_git_redact_url(cases[i][0], out, sizeof out), cases[i][1]);
  /* Truncation keeps the result a string and never shows more than the URL would. */
  char tiny[8];
  tide_git_redact_url("https://u:secret@h/r", tiny, sizeof tiny);
  assert_int_equal(strlen(tiny), 7);
  assert_null(strstr(tiny, "secret"));
}

static void test_known_host(void **state)
{
  (void)state;
  /* "AAAA" decodes to three zero bytes; "AQID" to 01 02 03. */
  const unsigned char zeros[3] = {0, 0, 0}, key[3] = {1, 2, 3};
  const char *kh =
      "# comment\n"
      "@revoked h ssh-ed25519 AQID\n"
      "|1|hashed= ssh-ed25519 AQID\n"
      "other,h2 ssh-ed25519 AAAA\n"
      "[h]:2222,[h3]:22 ssh-ed25519 AQID comment words\r\n"
      "h ssh-ed25519\n"
      "H4 ssh-ed25519 AQID";
  assert_int_equal(tide_git_known_host(kh, "h", 2222, key, 3), 0);
  assert_int_equal(tide_git_known_host(kh, "h2", 22, zeros, 3), 0);
  assert_int_equal(tide_git_known_host(kh, "h4", 22, key, 3), 0);  /* names are case-blind */
  assert_int_equal(tide_git_known_host(kh, "h", 22, key, 3), -1);  /* only @revoked and hashed */
  assert_int_equal(tide_git_known_host(kh, "h2", 22, key, 3), -1); /* a different key */
  assert_int_equal(tide_git_known_host(kh, "h", 2223, key, 3), -1);
  assert_int_equal(tide_git_known_host(kh, "h3", 22, key, 3), -1); /* "[h3]:22" is not "h3" */
  assert_int_equal(tide_git_known_host(kh, "h", 2222, key, 2), -1);
  assert_int_equal(tide_git_known_host("", "h", 22, key, 3), -1);
  assert_int_equal(tide_git_known_host("h ssh-ed25519 A!!!", "h", 22, key, 3), -1);
  assert_int_equal(tide_git_known_host(kh, "h", 2222, NULL, 0), -1);
  char longhost[400];
  memset(longhost, 'a', sizeof longhost - 1);
  longhost[sizeof longhost - 1] = '\0';
  assert_int_equal(tide_git_known_host(kh, longhost, 22, key, 3), -1);
}

static void test_errors(void **state)
{
  (void)state;
  tide_err err;
  tide_git_repo_info info = {0};
  assert_int_equal(tide_git_open(P("missing"), &info, &err), -ENOENT);
  assert_non_null(strstr(err.msg, "missing"));
  assert_int_equal(mkdir(P("plain"), 0755), 0);
  assert_int_equal(tide_git_open(P("plain"), &info, &err), TIDE_EGIT);
  assert_non_null(strstr(err.msg, "not a git repository"));
  tide_git_clone_opts o = {.url = P("missing"), .dir = P("c")};
  assert_int_equal(tide_git_clone(&o, &err), -ENOENT);
  tide_git_repo_info_clear(&info);
}

static void test_local_repository(void **state)
{
  (void)state;
  tide_err err;
  tide_git_repo_info info = {0};
  char repo[2 * PATH_MAX];
  snprintf(repo, sizeof repo, "%s", P("r"));
  assert_int_equal(tide_git_init(repo, 0, &info, &err), 0);
  assert_string_equal(info.path, repo);
  assert_false(info.bare);
  tide_git_repo_info_clear(&info);

  char first[TIDE_GIT_OID_HEX], second[TIDE_GIT_OID_HEX], id[TIDE_GIT_OID_HEX];
  put("r/a.txt", "a\n", 0644);
  const char *all[] = {"."};
  assert_int_equal(tide_git_add(repo, all, 1, &err), 0);
  assert_int_equal(tide_git_commit_create(repo, "first\n\nbody", "A", "a@b", first, &err), 0);
  put("r/b.txt", "b\n", 0644);
  unlink(P("r/a.txt"));
  tide_git_statuses st = {0};
  assert_int_equal(tide_git_status(repo, &st, &err), 0);
  assert_int_equal(st.n, 2);
  assert_string_equal(st.v[0].path, "a.txt");
  assert_string_equal(st.v[0].worktree, "deleted");
  assert_string_equal(st.v[1].worktree, "untracked");
  tide_git_statuses_clear(&st);
  assert_int_equal(tide_git_add(repo, all, 1, &err), 0);
  assert_int_equal(tide_git_commit_create(repo, "second", "A", "a@b", second, &err), 0);

  assert_int_equal(tide_git_resolve(repo, "HEAD~1", id, &err), 0);
  assert_string_equal(id, first);
  assert_int_equal(tide_git_resolve(repo, "nope", id, &err), TIDE_EGIT);
  char want[sizeof repo + 64];
  snprintf(want, sizeof want, "revision 'nope' does not resolve in %s", repo);
  assert_string_equal(err.msg, want);

  tide_git_commit c = {0};
  assert_int_equal(tide_git_commit_info(repo, first, &c, &err), 0);
  assert_string_equal(c.summary, "first");
  assert_string_equal(c.message, "first\n\nbody");
  assert_string_equal(c.author.email, "a@b");
  assert_int_equal(c.nparents, 0);
  tide_git_commit_clear(&c);

  tide_git_commits log = {0};
  tide_git_log_opts lo = {.limit = 0};
  assert_int_equal(tide_git_log(repo, &lo, &log, &err), 0);
  assert_int_equal(log.n, 2);
  assert_string_equal(log.v[0].id, second);
  assert_string_equal(log.v[0].parents[0], first);
  tide_git_commits_clear(&log);

  tide_git_strs paths = {0};
  assert_int_equal(tide_git_changed_paths(repo, first, second, &paths, &err), 0);
  assert_int_equal(paths.n, 2);
  assert_string_equal(paths.v[0], "a.txt");
  assert_string_equal(paths.v[1], "b.txt");
  tide_git_strs_clear(&paths);

  tide_git_head head = {0};
  assert_int_equal(tide_git_head_get(repo, &head, &err), 0);
  assert_string_equal(head.id, second);
  assert_non_null(head.branch);
  tide_git_head_clear(&head);

  assert_int_equal(tide_git_checkout(repo, first, 0, &err), 0);
  assert_int_equal(access(P("r/a.txt"), F_OK), 0);
  assert_int_equal(tide_git_head_get(repo, &head, &err), 0);
  assert_null(head.branch);
  assert_string_equal(head.id, first);
  tide_git_head_clear(&head);

  tide_git_refs tags = {0};
  assert_int_equal(tide_git_tags(repo, &tags, &err), 0);
  assert_int_equal(tags.n, 0);
  tide_git_refs_clear(&tags);

  /* A clone of the local path, then the remote's refs. */
  tide_git_clone_opts o = {.url = repo, .dir = P("c")};
  assert_int_equal(tide_git_clone(&o, &err), 0);
  tide_git_refs refs = {0};
  assert_int_equal(tide_git_ls_remote(P("c"), "origin", NULL, &refs, &err), 0);
  int found = 0;
  for (size_t i = 0; i < refs.n; i++)
    if (strcmp(refs.v[i].name, "HEAD") == 0 && strcmp(refs.v[i].id, first) == 0)
      found = 1;
  assert_true(found);
  tide_git_refs_clear(&refs);
  assert_int_equal(tide_git_fetch(P("c"), NULL, NULL, 0, NULL, &err), 0);
  assert_int_equal(tide_git_fetch(P("c"), "upstream", NULL, 0, NULL, &err), TIDE_EGIT);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_redact),
      cmocka_unit_test(test_known_host),
      cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_local_repository, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
