// fork + exec in C: between fork and exec only async-signal-safe calls may
// run, which Swift cannot promise. posix_spawn would do most of this, but it
// cannot make a terminal the controlling one (TIOCSCTTY), which a shell on
// the console needs for job control and ctrl-C.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include "CSpirit.h"
#include "shared/spirit_shared.h"

// The sandbox, in the child: only syscalls, no allocation. Returns 0 or an errno.
static int apply_sandbox(const spirit_spawn_options *o) {
    if (o->new_mount_ns) {
        if (unshare(CLONE_NEWNS) != 0) return errno;
        // Nothing this child mounts reaches the rest of the system; what the
        // system mounts later (a layer added) still reaches the child.
        if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0) return errno;
        for (char *const *p = o->writable_paths; p && *p; p++) {
            if (mount(*p, *p, NULL, MS_BIND | MS_REC, NULL) != 0) return errno;
        }
        if (o->private_tmp && mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0) return errno;
        for (char *const *p = o->read_only_paths; p && *p; p++) {
            if (mount(*p, *p, NULL, MS_BIND | MS_REC, NULL) != 0) return errno;
            if (mount(NULL, *p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) != 0) return errno;
        }
        if (o->read_only_root && mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) != 0) return errno;
    }
    if (o->drop_capabilities) {
        for (int cap = 0; cap < 64; cap++) {
            if (o->keep_capabilities & (1ULL << cap)) continue;
            // EINVAL: a number past this kernel's last capability.
            if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return errno;
        }
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return errno;
        struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
        struct __user_cap_data_struct data[2];
        if (syscall(SYS_capget, &header, data) != 0) return errno;
        data[0].inheritable &= (uint32_t)o->keep_capabilities;
        data[1].inheritable &= (uint32_t)(o->keep_capabilities >> 32);
        if (syscall(SYS_capset, &header, data) != 0) return errno;
    }
    return 0;
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

        if (options && options->new_session && setsid() < 0) spirit_shared_child_fail(report[1], errno);
        if (options && options->tty) {
            int fd = open(options->tty, O_RDWR | O_NOCTTY);
            if (fd < 0) spirit_shared_child_fail(report[1], errno);
            if (ioctl(fd, TIOCSCTTY, 1) < 0) spirit_shared_child_fail(report[1], errno);
            for (int target = 0; target < 3; target++) {
                if (dup2(fd, target) < 0) spirit_shared_child_fail(report[1], errno);
            }
            if (fd > 2) close(fd);
        } else {
            if (options && options->null_stdin) {
                int fd = open("/dev/null", O_RDONLY);
                if (fd < 0) spirit_shared_child_fail(report[1], errno);
                if (fd != 0) {
                    if (dup2(fd, 0) < 0) spirit_shared_child_fail(report[1], errno);
                    close(fd);
                }
            }
            if (options && options->output_fd >= 0) {
                if (dup2(options->output_fd, 1) < 0 || dup2(options->output_fd, 2) < 0)
                    spirit_shared_child_fail(report[1], errno);
            }
        }
        if (options && options->cgroup_procs_fd >= 0) {
            if (write(options->cgroup_procs_fd, "0", 1) != 1) spirit_shared_child_fail(report[1], errno);
        }
        if (options) {
            int err = apply_sandbox(options);
            if (err != 0) spirit_shared_child_fail(report[1], err);
        }
        if (options && options->set_ids) {
            gid_t groups[1] = { options->gid };
            if (setgroups(1, groups) != 0) spirit_shared_child_fail(report[1], errno);
            if (setgid(options->gid) != 0) spirit_shared_child_fail(report[1], errno);
            if (setuid(options->uid) != 0) spirit_shared_child_fail(report[1], errno);
        }
        if (options && options->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) spirit_shared_child_fail(report[1], errno);
        execve(path, argv, envp);
        spirit_shared_child_fail(report[1], errno);
    }

    close(report[1]);
    int child_errno = spirit_shared_exec_report(report[0], child);
    if (child_errno != 0) return child_errno;
    *pid = child;
    return 0;
}
