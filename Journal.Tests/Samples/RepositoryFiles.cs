namespace Journal.Tests.Samples;

/// <summary>Where the repository's files are, found from the test's output folder (the folder holding Journal.sln).</summary>
internal static class RepositoryFiles
{
    private static readonly Lazy<string> s_root = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "Journal.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no Journal.sln above {AppContext.BaseDirectory}");
    });

    /// <summary>The repository's root folder.</summary>
    public static string Root => s_root.Value;

    /// <summary>A path below the root, from '/'-separated parts.</summary>
    public static string Path(string relative) => System.IO.Path.Combine(Root, relative.Replace('/', System.IO.Path.DirectorySeparatorChar));
}
