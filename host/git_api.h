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

#define TIDE_GIT_API(X)                    \
  X(git_branch_create)                     \
  X(git_branch_iterator_free)              \
  X(git_branch_iterator_new)               \
  X(git_branch_name)                       \
  X(git_branch_next)                       \
  X(git_buf_dispose)                       \
  X(git_checkout_options_init)             \
  X(git_checkout_tree)                     \
  X(git_clone)                             \
  X(git_clone_options_init)                \
  X(git_commit_author)                     \
  X(git_commit_committer)                  \
  X(git_commit_create)                     \
  X(git_commit_free)                       \
  X(git_commit_id)                         \
  X(git_commit_lookup)                     \
  X(git_commit_message)                    \
  X(git_commit_parent)                     \
  X(git_commit_parent_id)                  \
  X(git_commit_parentcount)                \
  X(git_commit_summary)                    \
  X(git_commit_tree)                       \
  X(git_config_free)                       \
  X(git_config_get_multivar_foreach)       \
  X(git_config_get_string_buf)             \
  X(git_config_set_string)                 \
  X(git_credential_ssh_key_from_agent)     \
  X(git_credential_ssh_key_memory_new)     \
  X(git_credential_ssh_key_new)            \
  X(git_credential_username_new)           \
  X(git_credential_userpass_plaintext_new) \
  X(git_diff_foreach)                      \
  X(git_diff_free)                         \
  X(git_diff_num_deltas)                   \
  X(git_diff_options_init)                 \
  X(git_diff_tree_to_tree)                 \
  X(git_error_last)                        \
  X(git_error_set_str)                     \
  X(git_fetch_options_init)                \
  X(git_index_add_all)                     \
  X(git_index_free)                        \
  X(git_index_update_all)                  \
  X(git_index_write)                       \
  X(git_index_write_tree)                  \
  X(git_libgit2_init)                      \
  X(git_libgit2_opts)                      \
  X(git_object_free)                       \
  X(git_object_id)                         \
  X(git_object_peel)                       \
  X(git_oid_tostr)                         \
  X(git_reference_free)                    \
  X(git_reference_iterator_free)           \
  X(git_reference_iterator_glob_new)       \
  X(git_reference_lookup)                  \
  X(git_reference_name)                    \
  X(git_reference_name_to_id)              \
  X(git_reference_next)                    \
  X(git_reference_peel)                    \
  X(git_reference_shorthand)               \
  X(git_reference_symbolic_target)         \
  X(git_reference_target)                  \
  X(git_reference_type)                    \
  X(git_remote_connect)                    \
  X(git_remote_create_options_init)        \
  X(git_remote_create_with_opts)           \
  X(git_remote_disconnect)                 \
  X(git_remote_fetch)                      \
  X(git_remote_free)                       \
  X(git_remote_init_callbacks)             \
  X(git_remote_ls)                         \
  X(git_repository_config)                 \
  X(git_repository_config_snapshot)        \
  X(git_repository_free)                   \
  X(git_repository_index)                  \
  X(git_repository_init)                   \
  X(git_repository_is_bare)                \
  X(git_repository_open_ext)               \
  X(git_repository_path)                   \
  X(git_repository_set_head)               \
  X(git_repository_set_head_detached)      \
  X(git_repository_workdir)                \
  X(git_revparse_single)                   \
  X(git_revwalk_free)                      \
  X(git_revwalk_hide)                      \
  X(git_revwalk_new)                       \
  X(git_revwalk_next)                      \
  X(git_revwalk_push)                      \
  X(git_revwalk_sorting)                   \
  X(git_signature_default)                 \
  X(git_signature_free)                    \
  X(git_signature_now)                     \
  X(git_status_byindex)                    \
  X(git_status_list_entrycount)            \
  X(git_status_list_free)                  \
  X(git_status_list_new)                   \
  X(git_status_options_init)               \
  X(git_tree_free)                         \
  X(git_tree_lookup)

#endif
