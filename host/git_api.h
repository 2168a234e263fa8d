/*
** The libgit2 functions host/git.c calls, private to it. tide does not link libgit2: git.c opens
** it with dlopen on the first git operation and resolves each name below into a table of function
** pointers, because the loader's work for libgit2 and what it pulls in (krb5, gssapi, mbedtls,
** libssh2 and more) would otherwise be paid by every start of tide, git or not. Each entry is
** typed from libgit2's own declaration, so the compiler still checks every call; a call that
** bypasses the table has no library to link against and fails at link time.
**
** A function git.c starts to call goes here, once, in any order.
*/
#ifndef TIDE_GIT_API_H
#define TIDE_GIT_API_H

#include <git2.h>

#define TIDE_GIT_API(X, t)                    \
  X(t, git_branch_create)                     \
  X(t, git_branch_iterator_free)              \
  X(t, git_branch_iterator_new)               \
  X(t, git_branch_name)                       \
  X(t, git_branch_next)                       \
  X(t, git_buf_dispose)                       \
  X(t, git_checkout_options_init)             \
  X(t, git_checkout_tree)                     \
  X(t, git_clone)                             \
  X(t, git_clone_options_init)                \
  X(t, git_commit_author)                     \
  X(t, git_commit_committer)                  \
  X(t, git_commit_create)                     \
  X(t, git_commit_free)                       \
  X(t, git_commit_id)                         \
  X(t, git_commit_lookup)                     \
  X(t, git_commit_message)                    \
  X(t, git_commit_parent)                     \
  X(t, git_commit_parent_id)                  \
  X(t, git_commit_parentcount)                \
  X(t, git_commit_summary)                    \
  X(t, git_commit_tree)                       \
  X(t, git_config_free)                       \
  X(t, git_config_get_multivar_foreach)       \
  X(t, git_config_get_string_buf)             \
  X(t, git_config_set_string)                 \
  X(t, git_credential_ssh_key_from_agent)     \
  X(t, git_credential_ssh_key_memory_new)     \
  X(t, git_credential_ssh_key_new)            \
  X(t, git_credential_username_new)           \
  X(t, git_credential_userpass_plaintext_new) \
  X(t, git_diff_foreach)                      \
  X(t, git_diff_free)                         \
  X(t, git_diff_num_deltas)                   \
  X(t, git_diff_options_init)                 \
  X(t, git_diff_tree_to_tree)                 \
  X(t, git_error_last)                        \
  X(t, git_error_set_str)                     \
  X(t, git_fetch_options_init)                \
  X(t, git_index_add_all)                     \
  X(t, git_index_free)                        \
  X(t, git_index_update_all)                  \
  X(t, git_index_write)                       \
  X(t, git_index_write_tree)                  \
  X(t, git_libgit2_init)                      \
  X(t, git_libgit2_opts)                      \
  X(t, git_object_free)                       \
  X(t, git_object_id)                         \
  X(t, git_object_peel)                       \
  X(t, git_oid_tostr)                         \
  X(t, git_reference_free)                    \
  X(t, git_reference_iterator_free)           \
  X(t, git_reference_iterator_glob_new)       \
  X(t, git_reference_lookup)                  \
  X(t, git_reference_name)                    \
  X(t, git_reference_name_to_id)              \
  X(t, git_reference_next)                    \
  X(t, git_reference_peel)                    \
  X(t, git_reference_shorthand)               \
  X(t, git_reference_symbolic_target)         \
  X(t, git_reference_target)                  \
  X(t, git_reference_type)                    \
  X(t, git_remote_connect)                    \
  X(t, git_remote_create_options_init)        \
  X(t, git_remote_create_with_opts)           \
  X(t, git_remote_disconnect)                 \
  X(t, git_remote_fetch)                      \
  X(t, git_remote_free)                       \
  X(t, git_remote_init_callbacks)             \
  X(t, git_remote_ls)                         \
  X(t, git_repository_config)                 \
  X(t, git_repository_config_snapshot)        \
  X(t, git_repository_free)                   \
  X(t, git_repository_index)                  \
  X(t, git_repository_init)                   \
  X(t, git_repository_is_bare)                \
  X(t, git_repository_open_ext)               \
  X(t, git_repository_path)                   \
  X(t, git_repository_set_head)               \
  X(t, git_repository_set_head_detached)      \
  X(t, git_repository_workdir)                \
  X(t, git_revparse_single)                   \
  X(t, git_revwalk_free)                      \
  X(t, git_revwalk_hide)                      \
  X(t, git_revwalk_new)                       \
  X(t, git_revwalk_next)                      \
  X(t, git_revwalk_push)                      \
  X(t, git_revwalk_sorting)                   \
  X(t, git_signature_default)                 \
  X(t, git_signature_free)                    \
  X(t, git_signature_now)                     \
  X(t, git_status_byindex)                    \
  X(t, git_status_list_entrycount)            \
  X(t, git_status_list_free)                  \
  X(t, git_status_list_new)                   \
  X(t, git_status_options_init)               \
  X(t, git_tree_free)                         \
  X(t, git_tree_lookup)

#endif
