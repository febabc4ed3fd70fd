using System.CommandLine;
using Journal.Tools;

namespace JReplay;

/// <summary>
/// <c>jreplay</c>: the crash-recovery replay tool. Works on a snapshot store folder (its shared log) or on a bare
/// log file. <c>check</c> and <c>print</c> open the input read-only and write nothing; <c>zero-log</c> is the escape for
/// a journal recovery refuses.
/// </summary>
public static class Program
{
    /// <summary>Process entry point.</summary>
    public static int Main(string[] args) => Run(args, ToolConsole.ForProcess("jreplay"));

    /// <summary>Runs the tool in-process with the given output writers; returns the exit code.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr) =>
        Run(args, ToolConsole.ForWriters("jreplay", stdout, stderr, null));

    internal static int Run(string[] args, ToolConsole console) => Cli.Run(BuildCommand(console), args, console);

    internal static Command BuildCommand(ToolConsole console)
    {
        var root = Cli.CreateRoot("jreplay",
            "Check, print and replay the metadata journal of a snapshot store folder or a bare log file.",
            typeof(Program).Assembly, console);
        root.Subcommands.Add(CheckCommand.Create(console));
        root.Subcommands.Add(PrintCommand.Create(console));
        root.Subcommands.Add(ReplayCommand.Create(console));
        root.Subcommands.Add(ZeroLogCommand.Create(console));
        return root;
    }
}
