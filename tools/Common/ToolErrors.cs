namespace Journal.Tools;

/// <summary>
/// An error a tool reports as one line and an exit code. Thrown by command code for conditions the tool itself
/// detects (input missing, bad option value); library errors are mapped by <see cref="ErrorMap"/>.
/// </summary>
internal class ToolException : Exception
{
    /// <summary>Creates the error.</summary>
    public ToolException(int exitCode, string message, Exception? inner = null) : base(message, inner) => ExitCode = exitCode;

    /// <summary>The exit code to return.</summary>
    public int ExitCode { get; }
}

/// <summary>A bad option or argument value found after parsing (exit 64, usage shown).</summary>
internal sealed class UsageException(string message) : ToolException(ExitCodes.Usage, message);

/// <summary>An input that is missing, of the wrong kind, or unreadable (exit 66).</summary>
internal sealed class InputException(string message, Exception? inner = null) : ToolException(ExitCodes.NoInput, message, inner);
