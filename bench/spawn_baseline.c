/*
** Baseline for bench/spawn.sh: N sequential posix_spawn + waitpid of a program, the cheapest way
** a C program can run a child.
*/
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv)
{
  if (argc < 3) {
    fprintf(stderr, "usage: spawn_baseline N PROGRAM [ARG...]\n");
    return 2;
  }
  long n = strtol(argv[1], NULL, 10);
  for (long i = 0; i < n; i++) {
    pid_t pid;
    int status;
    if (posix_spawn(&pid, argv[2], NULL, NULL, argv + 2, environ) != 0) {
      perror("posix_spawn");
      return 1;
    }
    if (waitpid(pid, &status, 0) < 0) {
      perror("waitpid");
      return 1;
    }
  }
  return 0;
}
