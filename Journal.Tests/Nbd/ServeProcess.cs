using Journal.Tests.Tools;

namespace Journal.Tests.Nbd;

/// <summary>
/// <c>snapctl serve</c> running as a real process on a Unix socket (and optionally TCP on an ephemeral loopback port),
/// started and waited for with watchdogs. <see cref="Uri"/> gives the NBD URI of an export for the real clients.
/// </summary>
internal sealed class ServeProcess : IDisposable
{
    public static readonly TimeSpan Watchdog = TimeSpan.FromSeconds(90);

    private ServeProcess(ToolProcess process, string socket, string? tcp)
    {
        Process = process;
        Socket = socket;
        Tcp = tcp;
    }

    public ToolProcess Process { get; }
    public string Socket { get; }

    /// <summary>"127.0.0.1:port" when started with TCP.</summary>
    public string? Tcp { get; }

    /// <summary>Starts serving <paramref name="store"/> on <paramref name="socket"/>; returns once it listens.</summary>
    public static async Task<ServeProcess> StartAsync(string store, string socket, bool tcp = false, params string[] extra)
    {
        var args = new List<string> { "serve", store, "--socket", socket };
        if (tcp) args.AddRange(["--listen", "127.0.0.1:0"]);
        args.AddRange(extra);
        var p = ToolProcess.Start("snapctl", args);
        try
        {
            await p.WaitForLineAsync(l => l.StartsWith("listening on nbd+unix:", StringComparison.Ordinal), Watchdog);
            string? tcpAddress = null;
            if (tcp)
            {
                var line = await p.WaitForLineAsync(l => l.StartsWith("listening on nbd://", StringComparison.Ordinal), Watchdog);
                tcpAddress = line["listening on nbd://".Length..];
            }
            return new ServeProcess(p, socket, tcpAddress);
        }
        catch
        {
            p.Dispose();
            throw;
        }
    }

    /// <summary>The NBD URI of <paramref name="export"/> on the Unix socket.</summary>
    public string Uri(string export = "origin") => $"nbd+unix:///{export}?socket={Socket}";

    /// <summary>Sends <paramref name="signal"/> and waits for the exit; returns the exit code.</summary>
    public async Task<int> StopAsync(int signal = ToolProcess.SigTerm)
    {
        Process.Signal(signal);
        await Process.WaitForExitAsync(Watchdog);
        return Process.ExitCode;
    }

    /// <summary>SIGKILL, and waits until the process is gone.</summary>
    public async Task KillAsync()
    {
        Process.Signal(ToolProcess.SigKill);
        await Process.WaitForExitAsync(Watchdog);
    }

    public void Dispose() => Process.Dispose();
}
