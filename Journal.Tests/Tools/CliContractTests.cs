namespace Journal.Tests.Tools;

/// <summary>
/// The command-line contract both tools keep (the shape of thin-provisioning-tools' CLI tests): help and version,
/// usage errors exit 64 with the usage on stderr, missing or unreadable input exits 66 with one line naming it.
/// </summary>
public class CliContractTests
{
    public static TheoryData<string> Tools => new(ToolRunner.Tools);

    /// <summary>For each tool, the commands that read an input; <c>{input}</c> stands for the input path.</summary>
    public static TheoryData<string, string> InputCommands => new()
    {
        { "jreplay", "check {input}" },
        { "jreplay", "print {input}" },
        { "jreplay", "print {input} --json" },
        { "jreplay", "replay {input}" },
        { "jreplay", "replay {input} --dry-run" },
        { "snapctl", "status {input}" },
        { "snapctl", "snapshot create {input} s1" },
        { "snapctl", "snapshot delete {input} s1" },
        { "snapctl", "write {input} --offset 0 --pattern 7 --length 4K" },
        { "snapctl", "read {input} --offset 0 --length 4K" },
    };

    private static string[] Args(string template, string? input) =>
        template.Split(' ').Where(a => input is not null || a != "{input}").Select(a => a == "{input}" ? input! : a).ToArray();

    private static string CommandName(string template) => string.Join(' ', template.Split(' ').TakeWhile(a => a != "{input}"));

    [Theory, MemberData(nameof(Tools))]
    public void Help_prints_usage_and_commands_and_exits_0(string tool)
    {
        var r = ToolRunner.Run(tool, "--help");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("Usage:", r.Stdout);
        Assert.Contains(tool, r.Stdout);
        Assert.Equal("", r.Stderr);
    }

    [Theory, MemberData(nameof(Tools))]
    public void Short_help_flag_is_the_same_as_long(string tool)
    {
        Assert.Equal(ToolRunner.Run(tool, "--help").Stdout, ToolRunner.Run(tool, "-h").Stdout);
    }

    [Theory, MemberData(nameof(Tools))]
    public void Version_prints_the_tool_name_and_version_and_exits_0(string tool)
    {
        var r = ToolRunner.Run(tool, "--version");
        Assert.Equal(0, r.ExitCode);
        Assert.Matches($@"^{tool} \d+\.\d+\.\d+", r.Stdout);
        Assert.Single(r.Stdout.Trim().Split('\n'));
    }

    [Theory, MemberData(nameof(Tools))]
    public void No_command_is_a_usage_error(string tool)
    {
        var r = ToolRunner.Run(tool);
        Assert.Equal(64, r.ExitCode);
        Assert.Contains("Usage:", r.Stderr);
        Assert.Equal("", r.Stdout);
    }

    [Theory, MemberData(nameof(Tools))]
    public void Unknown_command_is_a_usage_error(string tool)
    {
        var r = ToolRunner.Run(tool, "frobnicate");
        Assert.Equal(64, r.ExitCode);
        Assert.Contains("frobnicate", r.Stderr);
        Assert.Contains("Usage:", r.Stderr);
    }

    [Theory, MemberData(nameof(Tools))]
    public void Unknown_option_is_a_usage_error_with_usage_on_stderr(string tool)
    {
        var r = ToolRunner.Run(tool, "--no-such-option");
        Assert.Equal(64, r.ExitCode);
        Assert.Contains("--no-such-option", r.Stderr);
        Assert.Contains("Usage:", r.Stderr);
        Assert.Equal("", r.Stdout);
    }

    [Theory, MemberData(nameof(InputCommands))]
    public void Unknown_option_on_a_command_is_a_usage_error(string tool, string command)
    {
        using var dir = new TempFolder();
        var r = ToolRunner.Run(tool, [.. Args(command, dir["x"]), "--no-such-option"]);
        Assert.Equal(64, r.ExitCode);
        Assert.Contains("--no-such-option", r.Stderr);
        Assert.Contains($"Usage:\n  {tool} {CommandName(command)}", r.Stderr);
        Assert.Equal("", r.Stdout);
    }

    [Theory, MemberData(nameof(InputCommands))]
    public void Unknown_option_in_place_of_the_input_is_a_usage_error(string tool, string command)
    {
        var r = ToolRunner.Run(tool, Args(command, "--no-such-option"));
        Assert.Equal(64, r.ExitCode);
        Assert.Contains("unrecognized option '--no-such-option'", r.Stderr);
    }

    [Theory, MemberData(nameof(InputCommands))]
    public void Missing_input_argument_is_a_usage_error(string tool, string command)
    {
        var r = ToolRunner.Run(tool, Args(command, null));
        Assert.Equal(64, r.ExitCode);
        Assert.Contains("Required argument missing", r.Stderr);
        Assert.Contains("Usage:", r.Stderr);
    }

    [Theory, MemberData(nameof(InputCommands))]
    public void Command_help_exits_0(string tool, string command)
    {
        var r = ToolRunner.Run(tool, [.. CommandName(command).Split(' '), "--help"]);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains($"{tool} {CommandName(command)}", r.Stdout);
    }

    [Theory, MemberData(nameof(InputCommands))]
    public void Input_not_found_exits_66_with_one_line_naming_it(string tool, string command)
    {
        using var dir = new TempFolder();
        var missing = dir["no-such-input"];
        var r = ToolRunner.Run(tool, Args(command, missing));
        Assert.Equal(66, r.ExitCode);
        Assert.Equal([$"{tool}: {missing}: not found"], r.ErrorLines);
    }

    [Theory, MemberData(nameof(InputCommands))]
    public void Input_that_is_an_unrelated_directory_exits_66(string tool, string command)
    {
        using var dir = new TempFolder();
        var r = ToolRunner.Run(tool, Args(command, dir.Path));
        Assert.Equal(66, r.ExitCode);
        var line = Assert.Single(r.ErrorLines);
        Assert.StartsWith($"{tool}: {dir.Path}: ", line);
        Assert.Contains(tool == "jreplay" ? "is a directory" : "not a snapshot store", line);
    }
}

/// <summary>Option values are checked at parse time: a bad size, byte or LSN is a usage error naming the option.</summary>
public class CliValueTests
{
    [Theory]
    [InlineData("12X", "unknown suffix")]
    [InlineData("-5", "negative")]
    [InlineData("K", "not a size")]
    [InlineData("99999999999999999999", "too large")]
    [InlineData("9000000000G", "too large")]
    public void Bad_size_is_a_usage_error_naming_the_option(string size, string problem)
    {
        using var dir = new TempFolder();
        var r = ToolRunner.SnapCtl("init", dir["store"], "--origin-size", size);
        Assert.Equal(64, r.ExitCode);
        Assert.Contains($"--origin-size: '{size}'", r.Stderr);
        Assert.Contains(problem, r.Stderr);
        Assert.False(Directory.Exists(dir["store"]));
    }

    [Theory]
    [InlineData("300")]
    [InlineData("-1")]
    [InlineData("abc")]
    [InlineData("0x100")]
    public void Bad_pattern_byte_is_a_usage_error(string pattern)
    {
        using var dir = new TempFolder();
        var r = ToolRunner.SnapCtl("write", dir.Path, "--offset", "0", "--pattern", pattern, "--length", "4K");
        Assert.Equal(64, r.ExitCode);
        Assert.Contains($"--pattern: '{pattern}' is not a byte value", r.Stderr);
    }

    [Theory]
    [InlineData("--offset 0")]
    [InlineData("--offset 0 --pattern 1")]
    [InlineData("--offset 0 --pattern 1 --input x")]
    [InlineData("--offset 0 --input x --length 4K")]
    [InlineData("--pattern 1 --length 4K")]
    public void Write_needs_exactly_one_data_source_and_an_offset(string options)
    {
        using var dir = new TempFolder();
        var r = ToolRunner.SnapCtl(["write", dir.Path, .. options.Split(' ')]);
        Assert.Equal(64, r.ExitCode);
        Assert.Contains("Usage:", r.Stderr);
    }

    [Theory]
    [InlineData("1")]
    [InlineData("a:b")]
    [InlineData("1:-2")]
    [InlineData(":5")]
    public void Bad_lsn_is_a_usage_error(string lsn)
    {
        using var dir = new TempFolder();
        var r = ToolRunner.JReplay("print", dir["log"], "--from-lsn", lsn);
        Assert.Equal(64, r.ExitCode);
        Assert.Contains($"--from-lsn: '{lsn}' is not an LSN", r.Stderr);
    }

    [Theory]
    [InlineData("status")]
    [InlineData("read")]
    public void A_file_where_a_store_folder_is_expected_exits_66(string command)
    {
        using var dir = new TempFolder();
        File.WriteAllBytes(dir["file"], new byte[4096]);
        string[] args = command == "read" ? ["read", dir["file"], "--offset", "0", "--length", "512"] : [command, dir["file"]];
        var r = ToolRunner.SnapCtl(args);
        Assert.Equal(66, r.ExitCode);
        Assert.Equal([$"snapctl: {dir["file"]}: is a file, expected a snapshot store folder"], r.ErrorLines);
    }
}
