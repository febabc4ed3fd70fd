namespace Journal.Storage;

/// <summary>
/// A device file could not be created or opened: missing, a directory, a length that is not whole sectors, locked
/// by another opener, access denied, or (for creation) already there. The one-line message names the path.
/// </summary>
public class DeviceOpenException : JournalException
{
    /// <summary>Creates the error; the message is "<paramref name="path"/>: <paramref name="problem"/>".</summary>
    public DeviceOpenException(string path, DeviceOpenError error, string problem, Exception? inner = null)
        : base($"{path}: {problem}", inner)
    {
        Path = path;
        Error = error;
        Problem = problem;
    }

    /// <summary>The full path of the file.</summary>
    public string Path { get; }

    /// <summary>What went wrong, without the path (the message is the path, ": ", and this).</summary>
    public string Problem { get; }

    /// <summary>The kind of failure, for callers that map it to an exit code or a retry.</summary>
    public DeviceOpenError Error { get; }
}
