using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace Journal.Tests.Tools;

/// <summary>
/// One of the built tools (<c>snapctl</c>, <c>jreplay</c>) running as a real process: <c>dotnet &lt;tool&gt;.dll</c> from
/// the test's output folder, where the build copies them. For what in-process runs cannot show: a second process
/// against the same store, SIGKILL at any instant, SIGINT/SIGTERM, a server other clients connect to.
/// </summary>
/// <remarks>
/// Standard output and error are collected line by line as they arrive (<see cref="Stdout"/>,
/// <see cref="WaitForLineAsync"/>). Disposing kills the process if it still runs, so a failed test leaves nothing
/// behind.
/// </remarks>
public sealed class ToolProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly List<(Func<string, bool> Match, TaskCompletionSource<string> Done)> _lineWaiters = new();
    private readonly TaskCompletionSource _stdoutClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _stderrClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ToolProcess(string tool, IReadOnlyList<string> args, string? workingDirectory, IReadOnlyDictionary<string, string>? environment)
    {
        Tool = tool;
        string dll = Path.Combine(AppContext.BaseDirectory, tool + ".dll");
        if (!File.Exists(dll)) throw new FileNotFoundException($"{dll}: the tool is not in the test output folder", dll);
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        if (environment is not null) foreach (var (k, v) in environment) psi.Environment[k] = v;
        _process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        _process.OutputDataReceived += (_, e) => OnLine(e.Data, _stdout, _stdoutClosed, match: true);
        _process.ErrorDataReceived += (_, e) => OnLine(e.Data, _stderr, _stderrClosed, match: true);
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>The tool's command name.</summary>
    public string Tool { get; }

    /// <summary>The process id.</summary>
    public int Pid => _process.Id;

    /// <summary>True once the process has exited.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>The exit code (valid after exit).</summary>
    public int ExitCode => _process.ExitCode;

    /// <summary>Standard output so far.</summary>
    public string Stdout { get { lock (_stdout) return _stdout.ToString(); } }

    /// <summary>Standard error so far.</summary>
    public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }

    /// <summary>Starts <paramref name="tool"/> with <paramref name="args"/>.</summary>
    public static ToolProcess Start(string tool, IReadOnlyList<string> args, string? workingDirectory = null,
        IReadOnlyDictionary<string, string>? environment = null) => new(tool, args, workingDirectory, environment);

    /// <summary>Runs <paramref name="tool"/> to the end (killed and failed after <paramref name="timeout"/>).</summary>
    public static async Task<ToolResult> RunAsync(string tool, IReadOnlyList<string> args, TimeSpan? timeout = null,
        string? workingDirectory = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        using var p = Start(tool, args, workingDirectory, environment);
        await p.WaitForExitAsync(timeout ?? TimeSpan.FromMinutes(2));
        return p.Result();
    }

    /// <summary>What the process produced (call after exit).</summary>
    public ToolResult Result() => new(ExitCode, Stdout, Stderr, []);

    /// <summary>
    /// Waits for the process to exit and for its output to be read to the end. Past <paramref name="timeout"/> the
    /// process is killed and the wait fails (a hung tool fails its test instead of stalling the run).
    /// </summary>
    public async Task WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            await Task.WhenAll(_stdoutClosed.Task, _stderrClosed.Task).WaitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            Kill();
            throw new TimeoutException($"{Tool} (pid {Pid}) did not exit within {timeout}; stdout:\n{Stdout}\nstderr:\n{Stderr}");
        }
    }

    /// <summary>
    /// Waits until a line of standard output or error matches <paramref name="match"/> and returns it; fails after
    /// <paramref name="timeout"/> or when the process exits without printing one.
    /// </summary>
    public async Task<string> WaitForLineAsync(Func<string, bool> match, TimeSpan timeout)
    {
        var tcs = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lineWaiters)
        {
            foreach (var line in (Stdout + Stderr).Split('\n'))
                if (match(line.TrimEnd('\r'))) return line.TrimEnd('\r');
            _lineWaiters.Add((match, tcs));
        }
        var exited = _process.WaitForExitAsync();
        var done = await Task.WhenAny(tcs.Task, exited, Task.Delay(timeout));
        if (done == tcs.Task) return await tcs.Task;
        // The process may have printed the line just before exiting.
        await Task.WhenAll(_stdoutClosed.Task, _stderrClosed.Task).WaitAsync(TimeSpan.FromSeconds(5)).ContinueWith(_ => { });
        if (tcs.Task.IsCompleted) return await tcs.Task;
        throw new TimeoutException(done == exited
            ? $"{Tool} (pid {Pid}) exited with {ExitCode} before printing the expected line; stdout:\n{Stdout}\nstderr:\n{Stderr}"
            : $"{Tool} (pid {Pid}) printed no expected line within {timeout}; stdout:\n{Stdout}\nstderr:\n{Stderr}");
    }

    /// <summary>Sends SIGKILL (no-op once exited).</summary>
    public void Kill()
    {
        try { if (!_process.HasExited) _process.Kill(entireProcessTree: true); }
        catch (InvalidOperationException) { }
    }

    /// <summary>Sends a signal (e.g. <see cref="SigInt"/>, <see cref="SigTerm"/>) to the process.</summary>
    /// <remarks>
    /// A signal the process ignores is refused with the reason: a process started with SIGINT ignored (the tests run in
    /// the background of a non-interactive shell, or under nohup) hands that on to every child, and a child's runtime
    /// keeps it ignored, so a test that signals would otherwise fail as if the tool had not reacted.
    /// </remarks>
    public void Signal(int signal)
    {
        if (signal is > 0 and < 64 && IgnoredSignals(Pid) is { } ignored && (ignored & (1UL << (signal - 1))) != 0)
            throw new InvalidOperationException($"{Tool} (pid {Pid}) ignores signal {signal}: it inherited that from the test process "
                + "(started in the background of a non-interactive shell, or under nohup?); run the tests where the signal is not ignored");
        if (kill(Pid, signal) != 0) throw new InvalidOperationException($"kill({Pid}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>The SigIgn mask of <paramref name="pid"/> (bit N-1 set: signal N ignored), or null when it cannot be read.</summary>
    internal static ulong? IgnoredSignals(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
                if (line.StartsWith("SigIgn:", StringComparison.Ordinal))
                    return Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16);
        }
        catch (IOException) { } // the process has ended
        catch (UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>SIGINT.</summary>
    public const int SigInt = 2;

    /// <summary>SIGKILL.</summary>
    public const int SigKill = 9;

    /// <summary>SIGTERM.</summary>
    public const int SigTerm = 15;

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);

    private void OnLine(string? line, StringBuilder into, TaskCompletionSource closed, bool match)
    {
        if (line is null)
        {
            closed.TrySetResult();
            return;
        }
        lock (into) into.Append(line).Append('\n');
        if (!match) return;
        List<TaskCompletionSource<string>>? hit = null;
        lock (_lineWaiters)
        {
            for (int i = _lineWaiters.Count - 1; i >= 0; i--)
                if (_lineWaiters[i].Match(line))
                {
                    (hit ??= []).Add(_lineWaiters[i].Done);
                    _lineWaiters.RemoveAt(i);
                }
        }
        if (hit is not null) foreach (var t in hit) t.TrySetResult(line);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Tool} (pid {Pid})";
}
