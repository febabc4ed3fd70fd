using Journal.Recovery;
using Journal.Storage;

namespace Journal.Tools;

/// <summary>
/// Maps an exception that escaped a command to an exit code and one line for stderr. Bad input never produces a
/// stack trace; an unexpected exception prints one line too, and its stack trace only when the environment
/// variable <c>JOURNAL_DEBUG</c> is set to 1.
/// <list type="number">
/// <item><see cref="ToolException"/>: its own code and message.</item>
/// <item><see cref="JournalArgumentException"/> (an <see cref="ArgumentException"/>: an invalid value the library refused): 64.</item>
/// <item><see cref="DeviceOpenException"/> for a missing file, a directory or access denied: 66.</item>
/// <item><see cref="CorruptionException"/>, any other <see cref="JournalException"/>, <see cref="BlockDeviceException"/>: 2.</item>
/// <item><see cref="FileNotFoundException"/>, <see cref="DirectoryNotFoundException"/>: 66, "&lt;path&gt;: not found".</item>
/// <item><see cref="UnauthorizedAccessException"/>: 66 (unreadable).</item>
/// <item>Any other <see cref="IOException"/>: 2.</item>
/// <item><see cref="OperationCanceledException"/>: 130 (interrupted).</item>
/// <item>Anything else: 2, "internal error".</item>
/// </list>
/// </summary>
internal static class ErrorMap
{
    /// <summary>True when <c>JOURNAL_DEBUG=1</c>: unexpected exceptions also print their stack trace.</summary>
    public static bool Debug => Environment.GetEnvironmentVariable("JOURNAL_DEBUG") == "1";

    /// <summary>The exit code and the one-line message for <paramref name="error"/>.</summary>
    public static (int ExitCode, string Message, bool Unexpected) Map(Exception error)
    {
        error = Unwrap(error);
        switch (error)
        {
            case ToolException t:
                return (t.ExitCode, t.Message, false);
            case JournalArgumentException a:
                return (ExitCodes.Usage, OneLine(a.Message), false);
            case DeviceOpenException { Error: DeviceOpenError.Missing or DeviceOpenError.IsDirectory or DeviceOpenError.AccessDenied } d:
                return (ExitCodes.NoInput, OneLine(d.Message), false);
            case JournalException j:
                return (ExitCodes.Failure, OneLine(j.Message), false);
            case BlockDeviceException b:
                return (ExitCodes.Failure, OneLine(b.Message), false);
            case FileNotFoundException f:
                return (ExitCodes.NoInput, f.FileName is { } name ? $"{name}: not found" : OneLine(f.Message), false);
            case DirectoryNotFoundException d:
                return (ExitCodes.NoInput, OneLine(d.Message), false);
            case UnauthorizedAccessException u:
                return (ExitCodes.NoInput, OneLine(u.Message), false);
            case IOException io:
                return (ExitCodes.Failure, OneLine(io.Message), false);
            case OperationCanceledException:
                return (ExitCodes.Interrupted, "interrupted", false);
            default:
                return (ExitCodes.Failure, $"internal error: {error.GetType().Name}: {OneLine(error.Message)}", true);
        }
    }

    /// <summary>Strips the wrappers tasks and reflection put around the real error.</summary>
    public static Exception Unwrap(Exception error)
    {
        while (true)
        {
            switch (error)
            {
                case AggregateException { InnerExceptions.Count: 1 } agg:
                    error = agg.InnerExceptions[0];
                    continue;
                case System.Reflection.TargetInvocationException { InnerException: { } inner }:
                    error = inner;
                    continue;
                default:
                    return error;
            }
        }
    }

    /// <summary>Collapses a message to one line.</summary>
    public static string OneLine(string message)
    {
        var s = message.ReplaceLineEndings(" ").Trim();
        return s.Length == 0 ? "unknown error" : s;
    }
}
