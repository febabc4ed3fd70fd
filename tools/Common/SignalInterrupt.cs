using System.Runtime.InteropServices;

namespace Journal.Tools;

/// <summary>
/// SIGINT and SIGTERM turned into cancellation: the first of either cancels <see cref="Token"/> instead of killing the
/// process, so the command stops at its next wait, closes the store cleanly (the log needs no replay afterwards) and
/// exits with 128 + the signal number (130, 143) and one line. Further signals while it stops are ignored; SIGKILL
/// is the way to stop a process that does not.
/// </summary>
internal sealed class SignalInterrupt : IDisposable
{
    private readonly CancellationTokenSource _cts = new();
    private readonly PosixSignalRegistration[] _registrations;
    private int _signal;

    private SignalInterrupt()
    {
        _registrations =
        [
            PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal),
            PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal),
        ];
    }

    /// <summary>Starts listening for SIGINT and SIGTERM (until disposed).</summary>
    public static SignalInterrupt Listen() => new();

    /// <summary>Cancelled by the first SIGINT or SIGTERM.</summary>
    public CancellationToken Token => _cts.Token;

    /// <summary>The signal number received first (2 or 15), or 0.</summary>
    public int Signal => Volatile.Read(ref _signal);

    /// <summary>The exit code for the signal received: 128 + its number.</summary>
    public int ExitCode => 128 + Signal;

    /// <summary>The signal's name, for the message.</summary>
    public string SignalName => Signal switch { 2 => "SIGINT", 15 => "SIGTERM", var n => $"signal {n}" };

    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true; // handled here: the command stops itself
        int number = context.Signal == PosixSignal.SIGTERM ? 15 : 2;
        if (Interlocked.CompareExchange(ref _signal, number, 0) == 0) _cts.Cancel();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var r in _registrations) r.Dispose();
        _cts.Dispose();
    }
}
