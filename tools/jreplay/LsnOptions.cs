using System.CommandLine;
using Journal.Format;

namespace JReplay;

/// <summary>LSN options (<c>cycle:block</c>); a malformed LSN is a usage error.</summary>
internal static class LsnOptions
{
    public static Option<Lsn?> Create(string name, string description) => new(name)
    {
        Description = description,
        HelpName = "cycle:block",
        CustomParser = result =>
        {
            var text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
            if (Lsn.TryParse(text, out var lsn)) return lsn;
            result.AddError($"{name}: '{text}' is not an LSN (expected cycle:block, for example 1:0)");
            return null;
        },
    };
}
