namespace Journal.Storage;

/// <summary>What the file system under a path has left (<see cref="FileBlockDevice.GetFileSystemSpace"/>).</summary>
/// <param name="AvailableBytes">Bytes an unprivileged writer can still allocate.</param>
/// <param name="ReadOnly">True when it is mounted read-only.</param>
public readonly record struct FileSystemSpace(long AvailableBytes, bool ReadOnly);
