using System.CommandLine;

namespace Journal.Tools;

/// <summary>Factories for the arguments and options the tools share, so they read and behave the same everywhere.</summary>
internal static class CommonOptions
{
    /// <summary>A required path argument.</summary>
    public static Argument<string> Path(string name, string description)
    {
        var argument = new Argument<string>(name) { Description = description, Arity = ArgumentArity.ExactlyOne };
        argument.Validators.Add(RejectOptionLike);
        return argument;
    }

    /// <summary>A name argument (snapshot names and the like).</summary>
    public static Argument<string> Name(string name, string description)
    {
        var argument = new Argument<string>(name) { Description = description, Arity = ArgumentArity.ExactlyOne };
        argument.Validators.Add(RejectOptionLike);
        return argument;
    }

    /// <summary>
    /// The parser hands an unknown option such as <c>--bogus</c> to a positional argument as its value; report it as
    /// the unknown option it is (a file whose name starts with '-' can still be given as <c>./-name</c>).
    /// </summary>
    private static void RejectOptionLike(System.CommandLine.Parsing.ArgumentResult result)
    {
        foreach (var token in result.Tokens)
            if (token.Value.Length > 1 && token.Value.StartsWith('-'))
                result.AddError($"unrecognized option '{token.Value}'");
    }

    /// <summary><c>--json</c>: machine-readable output.</summary>
    public static Option<bool> Json() => new("--json") { Description = "Write the result as one JSON object." };

    /// <summary>A size option (bytes, K/M/G/T suffixes); bad values are usage errors.</summary>
    public static Option<long> Size(string name, string description, long? defaultValue = null, bool required = false)
    {
        var option = new Option<long>(name)
        {
            Description = description,
            HelpName = "size",
            Required = required,
            CustomParser = Sizes.ParseArgument,
        };
        if (defaultValue is { } d) option.DefaultValueFactory = _ => d;
        return option;
    }
}
