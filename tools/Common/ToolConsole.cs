namespace Journal.Tools;

/// <summary>
/// Where a tool writes: text output, error output, and a raw byte stream for commands that emit data (for
/// example <c>snapctl read</c> without <c>--output</c>). Tests pass string writers and a memory stream; the real
/// entry point passes the process's standard streams.
/// </summary>
internal sealed class ToolConsole
{
    private readonly Func<Stream> _openRaw;

    /// <summary>Creates a console over the given writers.</summary>
    /// <param name="name">The tool name, used in messages ("snapctl").</param>
    /// <param name="stdout">Text output.</param>
    /// <param name="stderr">Error output.</param>
    /// <param name="openRaw">Opens the raw byte output (standard output as bytes).</param>
    /// <param name="isTerminal">True when standard output is an interactive terminal: progress bars may be drawn.</param>
    public ToolConsole(string name, TextWriter stdout, TextWriter stderr, Func<Stream> openRaw, bool isTerminal, bool listensForSignals = false)
    {
        ListensForSignals = listensForSignals;
        Name = name;
        Out = stdout;
        Error = stderr;
        _openRaw = openRaw;
        IsTerminal = isTerminal;
    }

    /// <summary>The tool name.</summary>
    public string Name { get; }

    /// <summary>Text output.</summary>
    public TextWriter Out { get; }

    /// <summary>Error output.</summary>
    public TextWriter Error { get; }

    /// <summary>True when output goes to an interactive terminal (progress bars are drawn only then).</summary>
    public bool IsTerminal { get; }

    /// <summary>True for the console of a real process: SIGINT and SIGTERM cancel <see cref="Cancellation"/>.</summary>
    public bool ListensForSignals { get; }

    /// <summary>
    /// Cancelled when the process gets SIGINT or SIGTERM (while a command runs): commands pass it to every wait and
    /// stop there, closing what they opened.
    /// </summary>
    public CancellationToken Cancellation { get; set; }

    /// <summary>Opens standard output as a byte stream; text written so far is flushed first.</summary>
    public Stream OpenRawOutput()
    {
        Out.Flush();
        return _openRaw();
    }

    /// <summary>The console of the running process.</summary>
    public static ToolConsole ForProcess(string name) => new(
        name, Console.Out, Console.Error, Console.OpenStandardOutput,
        isTerminal: !Console.IsOutputRedirected, listensForSignals: true);

    /// <summary>A console over caller-supplied writers (never a terminal).</summary>
    public static ToolConsole ForWriters(string name, TextWriter stdout, TextWriter stderr, Stream? rawStdout) => new(
        name, stdout, stderr,
        () => rawStdout ?? (stdout is StreamWriter sw ? sw.BaseStream : throw new InvalidOperationException("no raw output stream")),
        isTerminal: false);
}
