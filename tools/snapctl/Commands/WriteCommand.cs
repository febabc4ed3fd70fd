using System.CommandLine;
using Journal.Tools;

namespace SnapCtl.Commands;

/// <summary>
/// <c>snapctl write &lt;store&gt; [--snapshot &lt;name&gt;] --offset &lt;n&gt; (--pattern &lt;0-255&gt; --length &lt;n&gt; | --input &lt;file&gt;)</c>.
/// Returns once the write is durable.
/// </summary>
internal static class WriteCommand
{
    public static Command Create(ToolConsole console)
    {
        var store = CommonOptions.Path("store", "The store folder.");
        var snapshot = new Option<string>("--snapshot") { Description = "Write to this (writable) snapshot instead of the origin.", HelpName = "name" };
        var offset = CommonOptions.Size("--offset", "Byte offset (a multiple of 512).", required: true);
        var pattern = new Option<int?>("--pattern")
        {
            Description = "Fill with this byte value (0-255, or 0x00-0xff); needs --length.",
            HelpName = "0-255",
            CustomParser = ParseByte,
        };
        var length = CommonOptions.Size("--length", "Bytes to write with --pattern (a multiple of 512).");
        var input = new Option<string>("--input") { Description = "Write the contents of this file (a multiple of 512 bytes).", HelpName = "file" };
        var command = new Command("write", "Write to the origin or a snapshot; returns once the data is durable.")
        {
            store, snapshot, offset, pattern, length, input,
        };
        command.Validators.Add(result =>
        {
            bool hasPattern = result.GetResult(pattern) is not null;
            bool hasLength = result.GetResult(length) is not null;
            bool hasInput = result.GetResult(input) is not null;
            if (hasPattern == hasInput)
                result.AddError("give either --pattern with --length, or --input");
            else if (hasPattern && !hasLength)
                result.AddError("--pattern needs --length");
            else if (hasInput && hasLength)
                result.AddError("--length goes with --pattern, not --input (the file's size is the length)");
        });
        command.SetAction(r => StoreCommands.WriteAsync(console,
            r.GetValue(store)!, r.GetValue(snapshot), r.GetValue(offset),
            r.GetValue(pattern), r.GetValue(length), r.GetValue(input)));
        return command;
    }

    /// <summary>A byte value in decimal or 0x hex; anything else is a parse error.</summary>
    private static int? ParseByte(System.CommandLine.Parsing.ArgumentResult result)
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
        bool ok = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? int.TryParse(text.AsSpan(2), System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture, out int value)
            : int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out value);
        if (ok && value is >= 0 and <= 255) return value;
        result.AddError($"--pattern: '{text}' is not a byte value (0-255)");
        return null;
    }
}
