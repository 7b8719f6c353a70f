// fork + exec in C: between fork and exec only async-signal-safe calls may
// run, which Swift cannot promise. posix_spawn would do most of this, but it
// cannot make a terminal the controlling one (TIOCSCTTY), which a shell on
// the console needs for job control and ctrl-C.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <grp.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "CSpirit.h"

static void child_fail(int report_fd, int err) {
    ssize_t unused = write(report_fd, &err, sizeof err);
    (void)unused;
    _exit(127);
}

int spirit_spawn(const char *path, char *const argv[], char *const envp[],
                 const spirit_spawn_options *options, pid_t *pid) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;

    pid_t child = fork();
    if (child < 0) {
        int err = errno;
        close(report[0]);
        close(report[1]);
        return err;
    }
    if (child == 0) {
        sigset_t none;
        sigemptyset(&none);
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        for (int sig = 1; sig < NSIG; sig++) {
            if (sig == SIGKILL || sig == SIGSTOP) continue;
            (void)sigaction(sig, &dfl, NULL);
        }
        sigprocmask(SIG_SETMASK, &none, NULL);

        if (options && options->new_session && setsid() < 0) child_fail(report[1], errno);
        if (options && options->tty) {
            int fd = open(options->tty, O_RDWR | O_NOCTTY);
            if (fd < 0) child_fail(report[1], errno);
            if (ioctl(fd, TIOCSCTTY, 1) < 0) child_fail(report[1], errno);
            for (int target = 0; target < 3; target++) {
                if (dup2(fd, target) < 0) child_fail(report[1], errno);
            }
            if (fd > 2) close(fd);
        } else {
            if (options && options->null_stdin) {
                int fd = open("/dev/null", O_RDONLY);
                if (fd < 0) child_fail(report[1], errno);
                if (fd != 0) {
                    if (dup2(fd, 0) < 0) child_fail(report[1], errno);
                    close(fd);
                }
            }
            if (options && options->output_fd >= 0) {
                if (dup2(options->output_fd, 1) < 0 || dup2(options->output_fd, 2) < 0)
                    child_fail(report[1], errno);
            }
        }
        if (options && options->cgroup_procs_fd >= 0) {
            if (write(options->cgroup_procs_fd, "0", 1) != 1) child_fail(report[1], errno);
        }
        if (options && options->set_ids) {
            gid_t groups[1] = { options->gid };
            if (setgroups(1, groups) != 0) child_fail(report[1], errno);
            if (setgid(options->gid) != 0) child_fail(report[1], errno);
            if (setuid(options->uid) != 0) child_fail(report[1], errno);
        }
        execve(path, argv, envp);
        child_fail(report[1], errno);
    }

    close(report[1]);
    int child_errno = 0;
    ssize_t n;
    do {
        n = read(report[0], &child_errno, sizeof child_errno);
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof child_errno) {
        // The child failed before exec and has exited: collect it here so
        // that no caller sees a pid that never ran.
        int status;
        while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
        return child_errno;
    }
    *pid = child;
    return 0;
}
