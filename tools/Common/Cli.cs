using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.Reflection;

namespace Journal.Tools;

/// <summary>
/// The shared command-line runner: builds the root command with <c>--help</c> and <c>--version</c>, parses, runs
/// the chosen command's action, and turns every failure into an exit code and one line on stderr.
/// <list type="bullet">
/// <item>Parse errors (unknown option, missing argument, bad value): the errors, then the command's usage, on
/// stderr; exit 64.</item>
/// <item>A <see cref="UsageException"/> from an action (a value the parser could not judge alone): one line; exit 64.</item>
/// <item>Any other exception: <see cref="ErrorMap"/>.</item>
/// </list>
/// </summary>
internal static class Cli
{
    /// <summary>The tool's version: the informational version of the tool assembly.</summary>
    public static string Version(Assembly assembly) =>
        assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? assembly.GetName().Version?.ToString() ?? "0";

    /// <summary>
    /// A root command named <paramref name="name"/> (the name is fixed, not taken from the host executable, so usage
    /// reads the same in tests) with <c>--help</c> and a <c>--version</c> that prints "name version".
    /// </summary>
    public static Command CreateRoot(string name, string description, Assembly assembly, ToolConsole console)
    {
        var root = new Command(name, description);
        root.Options.Add(new HelpOption());
        root.Options.Add(new VersionOption { Action = new PrintVersion($"{name} {Version(assembly)}", console) });
        return root;
    }

    /// <summary>Parses <paramref name="args"/> and runs the chosen action; returns the exit code.</summary>
    public static int Run(Command root, string[] args, ToolConsole console)
    {
        ParseResult parsed;
        try
        {
            parsed = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
        }
        catch (Exception e)
        {
            console.Error.WriteLine($"{console.Name}: {ErrorMap.OneLine(e.Message)}");
            return ExitCodes.Usage;
        }

        if (parsed.Action is ParseErrorAction)
        {
            foreach (var error in parsed.Errors.Where(e => !string.IsNullOrWhiteSpace(e.Message)).Select(e => e.Message).Distinct())
                console.Error.WriteLine($"{console.Name}: {error}");
            console.Error.WriteLine();
            WriteHelp(root, parsed.CommandResult.Command, console.Error);
            console.Error.Flush();
            return ExitCodes.Usage;
        }

        using var signals = console.ListensForSignals ? SignalInterrupt.Listen() : null;
        console.Cancellation = signals?.Token ?? CancellationToken.None;
        var config = new InvocationConfiguration
        {
            Output = console.Out,
            Error = console.Error,
            EnableDefaultExceptionHandler = false,
            ProcessTerminationTimeout = null,
        };
        try
        {
            int code = parsed.Invoke(config);
            console.Out.Flush();
            return code;
        }
        catch (Exception e)
        {
            try { console.Out.Flush(); } catch (IOException) { }
            if (ErrorMap.Unwrap(e) is OperationCanceledException && signals is { Signal: not 0 })
            {
                console.Error.WriteLine($"{console.Name}: interrupted by {signals.SignalName}: stopped; what it had opened was closed cleanly");
                console.Error.Flush();
                return signals.ExitCode;
            }
            return Report(e, console);
        }
    }

    private static int Report(Exception e, ToolConsole console)
    {
        var (code, message, _) = ErrorMap.Map(e);
        console.Error.WriteLine($"{console.Name}: {message}");
        if (ErrorMap.Debug) console.Error.WriteLine(ErrorMap.Unwrap(e).ToString());
        console.Error.Flush();
        return code;
    }

    /// <summary>Writes the help of <paramref name="command"/> (a command under <paramref name="root"/>) to <paramref name="writer"/>.</summary>
    public static void WriteHelp(Command root, Command command, TextWriter writer)
    {
        var path = CommandPath(command).Split(' ').Skip(1).Append("--help").ToArray();
        root.Parse(path).Invoke(new InvocationConfiguration { Output = writer, Error = writer });
    }

    /// <summary>"snapctl snapshot create": the names from the root to <paramref name="command"/>.</summary>
    public static string CommandPath(Command command)
    {
        var names = new List<string>();
        for (Symbol? s = command; s is not null; s = s.Parents.OfType<Command>().FirstOrDefault())
            names.Add(s.Name);
        names.Reverse();
        return string.Join(' ', names);
    }

    private sealed class PrintVersion(string text, ToolConsole console) : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            console.Out.WriteLine(text);
            return ExitCodes.Success;
        }
    }
}
