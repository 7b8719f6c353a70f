#ifndef CSPIRIT_H
#define CSPIRIT_H

#include <stdint.h>
#include <sys/types.h>
#include <signal.h>

/// CLOCK_BOOTTIME in microseconds at the moment the early constructor ran
/// (the first instruction of ours in the process), or 0 if it did not run.
int64_t spirit_process_start_us(void);

/// argv as the process received it, kept by the early constructor; *count
/// is 0 if the constructor did not get it.
char **spirit_arguments(int *count);

/// CLOCK_BOOTTIME now, in microseconds.
int64_t spirit_boottime_us(void);

/// Options for spirit_spawn.
typedef struct {
    /// Start a new session (setsid) in the child.
    int new_session;
    /// If not NULL: open this terminal in the child, make it the controlling
    /// terminal (TIOCSCTTY) and put it on fds 0, 1 and 2.
    const char *tty;
    /// If >= 0: put this fd on 1 and 2 in the child (ignored when tty is set).
    int output_fd;
    /// Put /dev/null on fd 0 (ignored when tty is set).
    int null_stdin;
    /// If set_ids: setgroups({gid}), setgid(gid), setuid(uid) before exec.
    int set_ids;
    uid_t uid;
    gid_t gid;
    /// If >= 0: an open cgroup.procs of a cgroup v2 directory; the child
    /// writes "0" to it (moving itself) before exec.
    int cgroup_procs_fd;
    /// The sandbox (a service file's [sandbox] table), applied in this order
    /// after the cgroup move and before the user change:
    /// If new_mount_ns: a mount namespace of its own (unshare CLONE_NEWNS, /
    /// made a recursive slave); each of writable_paths bound on itself
    /// (so that it stays writable); a fresh tmpfs on /tmp if private_tmp;
    /// each of read_only_paths bound on itself and made read-only; / made
    /// read-only if read_only_root. The lists end with NULL.
    int new_mount_ns;
    int private_tmp;
    int read_only_root;
    char *const *writable_paths;
    char *const *read_only_paths;
    /// If drop_capabilities: every capability not in keep_capabilities (bit
    /// N = capability N) leaves the bounding set, the inheritable set and
    /// the ambient set, so that the program never holds it after exec.
    int drop_capabilities;
    uint64_t keep_capabilities;
    /// prctl(PR_SET_NO_NEW_PRIVS): setuid bits and file capabilities give nothing.
    int no_new_privileges;
} spirit_spawn_options;

/// fork + execve with a child that runs only async-signal-safe code: it
/// unblocks every signal, resets every handler to the default, applies the
/// options and execs. Returns 0 and sets *pid, or an errno: the errno of
/// fork, or of the child's setup or execve (reported back through a
/// close-on-exec pipe), in which case the child has already exited.
int spirit_spawn(const char *path, char *const argv[], char *const envp[],
                 const spirit_spawn_options *options, pid_t *pid);

/// finit_module(2); returns 0 or -errno.
int spirit_finit_module(int fd, const char *params, int flags);

/// reboot(2) with one of the LINUX_REBOOT_CMD_* values; returns 0 or -errno.
int spirit_reboot(unsigned int cmd);

/// The LINUX_REBOOT_CMD_* values, re-exported as plain constants because
/// Swift does not import the kernel header's macros.
#define SPIRIT_REBOOT_CMD_RESTART 0x01234567U
#define SPIRIT_REBOOT_CMD_HALT 0xCDEF0123U
#define SPIRIT_REBOOT_CMD_POWER_OFF 0x4321FEDCU
#define SPIRIT_REBOOT_CMD_CAD_OFF 0x00000000U

/// Block every signal in the calling thread (and so in every thread it
/// creates later). Returns 0 or -errno.
int spirit_block_all_signals(void);

/// A signalfd(2) that reads every signal, close-on-exec. Returns fd or -errno.
int spirit_signalfd_all(void);

/// Reads one signal from a signalfd: its number, and the pid that sent it
/// in *sender (0 for the kernel). Returns the signal or -errno.
int spirit_signalfd_read(int fd, pid_t *sender);

/// The abbreviation ("SEGV") and description ("Segmentation fault") of a
/// signal, or NULL. From glibc's sigabbrev_np and sigdescr_np.
const char *spirit_signal_abbrev(int sig);
const char *spirit_signal_description(int sig);

/// waitpid(-1 or pid, WNOHANG or 0) decoded: returns the pid (0 when none is
/// ready with WNOHANG) or -errno; *exited is 1 for a normal exit with its
/// code in *code, 0 for a signal with its number in *code.
pid_t spirit_wait(pid_t pid, int nohang, int *exited, int *code);

/// Attaches `file` to a free loop device, read-only and auto-cleared when
/// its last user goes (LOOP_CONFIGURE, Linux 5.8+). Returns the open loop
/// fd (keep it open until the device is mounted, or autoclear frees it at
/// once) and writes the device path into `device`; or -errno.
int spirit_loop_attach(const char *file, char *device, size_t device_size);

/// swapon(2) with no flags; returns 0 or -errno.
int spirit_swapon(const char *device);

/// A NETLINK_KOBJECT_UEVENT socket subscribed to the kernel's uevents,
/// close-on-exec; returns the fd or -errno.
int spirit_uevent_socket(void);

/// Waits up to `timeout_ms` for one uevent and reads it into `buffer`
/// (NUL-separated `KEY=value` fields after an `action@devpath` header).
/// Returns its length, 0 on timeout, or -errno.
int spirit_uevent_read(int fd, char *buffer, int size, int timeout_ms);

/// ioctl(2) with an integer argument (NBD_SET_SOCK, NBD_SET_SIZE, …),
/// retried on EINTR. Returns its result or -errno.
int spirit_ioctl_value(int fd, unsigned long request, unsigned long value);

/// IP_PKTINFO on a UDP socket, so that spirit_recv_datagram learns the
/// local address each datagram came in on. Returns 0 or -errno.
int spirit_enable_packet_info(int fd);

/// recvmsg(2) of one datagram: the sender into `from` (*from_length in and
/// out) and the local address it reached (IP_PKTINFO's ipi_spec_dst, network
/// order; 0 if unknown) into *local_address. Returns its length or -errno
/// (-EMSGSIZE for a datagram longer than `size`).
long spirit_recv_datagram(int fd, void *buffer, size_t size, void *from, unsigned int *from_length,
                          uint32_t *local_address);
/// sendto(2) with IP_PKTINFO's ipi_spec_dst set to `local_address` (network
/// order): the answer leaves from that address, and a broadcast to
/// 255.255.255.255 goes out of the interface that holds it (without it,
/// a host with no default route cannot send a limited broadcast at all).
long spirit_send_datagram_from(int fd, const void *buffer, size_t size, const void *to, unsigned int to_length,
                               uint32_t local_address);

/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphans of our descendants come to us,
/// not to PID 1. Returns 0 or -errno.
int spirit_set_child_subreaper(void);

/// A Unix socket (SOCK_STREAM if stream, else SOCK_DGRAM) bound to `path`
/// (an old socket file there is removed first), close-on-exec and
/// non-blocking, listening if a stream socket. Returns the fd or -errno.
int spirit_unix_bind(const char *path, int stream);

/// A stream connection to the Unix socket at `path`, close-on-exec.
/// Returns the fd or -errno.
int spirit_unix_connect(const char *path);

/// accept4(SOCK_CLOEXEC), blocking. Returns the fd or -errno.
int spirit_accept(int fd);

/// The uid of the peer of a connected Unix socket (SO_PEERCRED), or -errno.
long spirit_peer_uid(int fd);

// sendmsg(2) of `bytes` with one descriptor in SCM_RIGHTS ancillary data
// (QMP's getfd takes the migration stream's fd this way): the count sent, or -errno.
long spirit_send_with_fd(int fd, const void *bytes, size_t count, int passed);

/// pipe2(O_CLOEXEC); the read end is also non-blocking. Returns 0 or -errno.
int spirit_output_pipe(int fds[2]);

/// swapoff(2); returns 0 or -errno.
int spirit_swapoff(const char *device);

/// The loopback interface up (the kernel gives it 127.0.0.1 then), as
/// every init does before its services start. Returns 0 or -errno.
int spirit_loopback_up(void);

/// chroot(2); returns 0 or -errno.
int spirit_chroot(const char *path);

/// The C errno of the calling thread.
int spirit_errno(void);
/// memfd_create(2) with MFD_CLOEXEC: -1 and errno on failure.
int spirit_memfd_create(const char *name);

/// statfs(2)'s f_type (the filesystem's magic number) of `path`; 0 or
/// -errno. Swift's Glibc module does not export <sys/vfs.h>.
int spirit_statfs_type(const char *path, long *type);

/// lgetxattr(2): the value's length, or -errno. Swift's Glibc module does
/// not export <sys/xattr.h>.
long spirit_lgetxattr(const char *path, const char *name, void *value, unsigned long size);

/// What FBIOGET_VSCREENINFO and FBIOGET_FSCREENINFO say of a framebuffer
/// device, as far as Spirit draws on it.
typedef struct {
    /// The visible resolution in pixels (xres, yres).
    uint32_t width;
    uint32_t height;
    /// The visible area's offset in the virtual screen (xoffset, yoffset).
    uint32_t x_offset;
    uint32_t y_offset;
    uint32_t bits_per_pixel;
    /// Bit offsets of the colour channels in a pixel (0x00RRGGBB: 16, 8, 0).
    uint32_t red_offset;
    uint32_t green_offset;
    uint32_t blue_offset;
    /// Bytes per row (fix.line_length) and of the whole mapping (smem_len).
    uint32_t line_length;
    uint32_t memory_length;
    /// The driver's name ("EFI VGA", "bochs-drmdrmfb"), NUL-terminated.
    char id[17];
} spirit_fb_info;

/// FBIOGET_VSCREENINFO and FBIOGET_FSCREENINFO on an open fbdev device,
/// into *info. Returns 0 or -errno.
int spirit_fb_screen_info(int fd, spirit_fb_info *info);

/// Opens the virtual terminal `tty` (/dev/tty1, /dev/tty0 for the active
/// one), sets its display mode with KDSETMODE (KD_GRAPHICS if `graphics`,
/// else KD_TEXT) and closes it. Only open, ioctl and close: usable from a
/// crash path. Returns 0 or -errno.
int spirit_console_set_mode(const char *tty, int graphics);

/// EVIOCGBIT(type, size): the bitmap of the event types (`type` 0) or of
/// the codes of one type (EV_KEY: the keys) an evdev device reports, into
/// `bits` (zeroed first). Returns the number of bytes the kernel wrote or
/// -errno.
int spirit_evdev_bits(int fd, unsigned int type, uint8_t *bits, unsigned int size);

/// EVIOCGNAME: the device's name, NUL-terminated in `name`. Returns its
/// length or -errno.
int spirit_evdev_name(int fd, char *name, unsigned int size);

/// EVIOCGRAB on (grab != 0: no other reader, not even the console, gets
/// the device's events) or off. Returns 0 or -errno.
int spirit_evdev_grab(int fd, int grab);

/// A new pseudo-terminal: posix_openpt (close-on-exec, non-blocking, not
/// our controlling terminal), grantpt, unlockpt, and ptsname_r into
/// `slave` (/dev/pts/N). Returns the master fd or -errno.
int spirit_pty_open(char *slave, size_t size);

/// TIOCSWINSZ: the terminal's size in character cells (the kernel sends
/// SIGWINCH to its foreground process group). Returns 0 or -errno.
int spirit_pty_set_size(int fd, unsigned short rows, unsigned short columns);

#endif
