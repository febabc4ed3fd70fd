using System.CommandLine;
using Journal.Tools;

namespace SnapCtl.Commands;

/// <summary><c>snapctl demo [&lt;folder&gt;] [--json]</c>: the main job end to end.</summary>
internal static class DemoCommand
{
    public static Command Create(ToolConsole console)
    {
        var folder = new Argument<string?>("folder")
        {
            Description = "Where to build the demo store (default: a scratch folder, removed afterwards).",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var json = CommonOptions.Json();
        var command = new Command("demo",
            "Create a store, snapshot while writing, crash without a clean close, reopen (replaying the journal) and verify every byte.")
        {
            folder, json,
        };
        command.SetAction(r => Demo.DemoRunner.RunAsync(console, r.GetValue(folder), r.GetValue(json)));
        return command;
    }
}
