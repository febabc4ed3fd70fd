using System.CommandLine;
using Journal.Tools;
using SnapCtl.Commands;

namespace SnapCtl;

/// <summary>
/// <c>snapctl</c>: manage a copy-on-write snapshot store (origin, snapshots, shared journal) and run the demo.
/// </summary>
public static class Program
{
    /// <summary>Process entry point.</summary>
    public static int Main(string[] args) => Run(args, ToolConsole.ForProcess("snapctl"));

    /// <summary>Runs the tool in-process with the given output writers; returns the exit code.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr) =>
        Run(args, ToolConsole.ForWriters("snapctl", stdout, stderr, null));

    /// <summary>
    /// Runs the tool in-process; raw data (<c>read</c> without <c>--output</c>) goes to <paramref name="rawStdout"/>.
    /// </summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, Stream rawStdout) =>
        Run(args, ToolConsole.ForWriters("snapctl", stdout, stderr, rawStdout));

    internal static int Run(string[] args, ToolConsole console) => Cli.Run(BuildCommand(console), args, console);

    internal static Command BuildCommand(ToolConsole console)
    {
        var root = Cli.CreateRoot("snapctl",
            "Manage a copy-on-write snapshot store (origin, snapshots, shared metadata journal).",
            typeof(Program).Assembly, console);
        root.Subcommands.Add(InitCommand.Create(console));
        root.Subcommands.Add(SnapshotCommand.Create(console));
        root.Subcommands.Add(WriteCommand.Create(console));
        root.Subcommands.Add(ReadCommand.Create(console));
        root.Subcommands.Add(StatusCommand.Create(console));
        root.Subcommands.Add(DiffCommand.Create(console));
        root.Subcommands.Add(ServeCommand.Create(console));
        root.Subcommands.Add(DemoCommand.Create(console));
        return root;
    }
}
