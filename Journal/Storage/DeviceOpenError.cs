namespace Journal.Storage;

/// <summary>Why a device file could not be created or opened (see <see cref="DeviceOpenException"/>).</summary>
public enum DeviceOpenError
{
    /// <summary>The file (or its directory) does not exist.</summary>
    Missing,
    /// <summary>The path names a directory.</summary>
    IsDirectory,
    /// <summary>The file's length is not a whole number of 512-byte sectors.</summary>
    BadLength,
    /// <summary>Another process or handle holds the file's exclusive lock.</summary>
    InUse,
    /// <summary>The operating system refused access.</summary>
    AccessDenied,
    /// <summary>Creation was asked for and the path already exists.</summary>
    AlreadyExists,
    /// <summary>The path names something other than a regular file (a FIFO, a socket, a device).</summary>
    NotRegularFile,
    /// <summary>Any other failure; the message carries the system's words.</summary>
    Other,
}
