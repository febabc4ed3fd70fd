using System.Diagnostics;

namespace Journal.Tests.Tools;

/// <summary>
/// Something other than a socket at the store's control-socket name (<c>control.sock</c>): a FIFO, a regular file, a
/// symbolic link. A command runs offline (no server can be behind it); <c>serve</c> refuses at once, naming what it is,
/// and never opens it (opening a FIFO would block) or removes it.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class ControlSocketFileTests
{
    private static readonly TimeSpan Watchdog = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData("FIFO")]
    [InlineData("regular file")]
    [InlineData("symbolic link")]
    [InlineData("dangling symbolic link")]
    public async Task Something_else_at_the_control_socket_name_is_refused_by_serve_and_ignored_by_commands(string what)
    {
        using var dir = new TempFolder();
        string store = dir["store"];
        Assert.Equal(0, ToolRunner.SnapCtl("init", store, "--origin-size", "1M").ExitCode);
        string control = Path.Combine(store, "control.sock");
        string target = dir["elsewhere"];
        switch (what)
        {
            case "FIFO":
                using (var p = Process.Start(new ProcessStartInfo("mkfifo", [control]) { UseShellExecute = false })!)
                {
                    p.WaitForExit();
                    Assert.Equal(0, p.ExitCode);
                }
                break;
            case "regular file":
                File.WriteAllText(control, "notes");
                break;
            case "symbolic link":
                File.WriteAllText(target, "notes");
                File.CreateSymbolicLink(control, target);
                break;
            default:
                File.CreateSymbolicLink(control, target);
                break;
        }

        var status = await ToolProcess.RunAsync("snapctl", ["status", store], Watchdog);
        Assert.True(status.ExitCode == 0, status.ToString());
        var write = await ToolProcess.RunAsync("snapctl", ["write", store, "--offset", "0", "--pattern", "1", "--length", "4K"], Watchdog);
        Assert.True(write.ExitCode == 0, write.ToString());

        var serve = await ToolProcess.RunAsync("snapctl", ["serve", store, "--socket", dir["nbd.sock"]], Watchdog);
        Assert.Equal(2, serve.ExitCode);
        Assert.Contains($"{control}: exists and is a {(what.Contains("link") ? "symbolic link" : what)}, not a socket; not replacing it", serve.Stderr);
        Assert.DoesNotContain("   at ", serve.Stderr); // the one error line among the log lines, no stack trace
        Assert.True(new FileInfo(control).LinkTarget is not null || File.Exists(control), "the file at the control socket's name was removed");
        if (what == "regular file") Assert.Equal("notes", File.ReadAllText(control));
        if (what == "symbolic link") Assert.Equal("notes", File.ReadAllText(target));
    }
}
