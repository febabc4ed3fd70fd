namespace Journal.Tools;

/// <summary>
/// The exit codes every tool returns (the contract scripts rely on):
/// <list type="table">
/// <item><term>0</term><description>success</description></item>
/// <item><term>1</term><description>the check found work to do (for example a log that needs replay)</description></item>
/// <item><term>2</term><description>corruption or failure</description></item>
/// <item><term>64</term><description>usage error: unknown option, missing argument, bad value</description></item>
/// <item><term>66</term><description>input missing or unreadable</description></item>
/// </list>
/// </summary>
internal static class ExitCodes
{
    /// <summary>Success.</summary>
    public const int Success = 0;

    /// <summary>The check found work to do.</summary>
    public const int WorkToDo = 1;

    /// <summary>Corruption or failure.</summary>
    public const int Failure = 2;

    /// <summary>Usage error (sysexits EX_USAGE).</summary>
    public const int Usage = 64;

    /// <summary>Input missing or unreadable (sysexits EX_NOINPUT).</summary>
    public const int NoInput = 66;

    /// <summary>Interrupted (Ctrl+C): 128 + SIGINT.</summary>
    public const int Interrupted = 130;
}
