namespace Journal.Tools;

/// <summary>
/// Checks on inputs before a command opens them, so a wrong path gives one clear line and exit 66 instead of an
/// error from deep inside a library.
/// </summary>
internal static class InputPaths
{
    /// <summary>The path must be an existing, readable regular file.</summary>
    public static void RequireFile(string path)
    {
        if (Directory.Exists(path)) throw new InputException($"{path}: is a directory, expected a file");
        if (!File.Exists(path)) throw new InputException($"{path}: not found");
        RequireReadable(path);
    }

    /// <summary>The path must be an existing directory.</summary>
    public static void RequireDirectory(string path, string expected)
    {
        if (File.Exists(path)) throw new InputException($"{path}: is a file, expected {expected}");
        if (!Directory.Exists(path)) throw new InputException($"{path}: not found");
    }

    /// <summary>The path must exist (file or directory).</summary>
    public static void RequireExisting(string path)
    {
        if (!File.Exists(path) && !Directory.Exists(path)) throw new InputException($"{path}: not found");
    }

    /// <summary>
    /// Opens and closes the file for reading to prove it is readable. Anything but a regular file (a FIFO, a device, a
    /// socket) is refused first, without opening it: opening a FIFO would block until a writer came.
    /// </summary>
    public static void RequireReadable(string path)
    {
        RequireRegular(path);
        try
        {
            using var _ = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.None);
        }
        catch (UnauthorizedAccessException)
        {
            throw new InputException($"{path}: permission denied");
        }
        catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException)
        {
            throw new InputException($"{path}: cannot be read: {ErrorMap.OneLine(e.Message)}", e);
        }
    }

    /// <summary>When <paramref name="path"/> exists, it must be a regular file (or a link to one); checked without opening it.</summary>
    public static void RequireRegular(string path)
    {
        if (Snapshot.Recovery.RegularFile.WhatElse(path) is { } what) throw new InputException($"{path}: is {what}, not a regular file");
    }
}
