import SpiritCore

enum Usage {
    static let text = """
    usage: spirit <command>
      init            PID 1 (also when started as /init or /sbin/init)
      boot-worker     the stage-1 boot, run by PID 1 in a child
      poweroff        ask PID 1 to stop every process and power off
      reboot          ask PID 1 to stop every process and restart
      halt            ask PID 1 to stop every process and halt
      version         print the version
    Exit codes: 0 success, 100 usage error, 111 system failure.
    """
}
