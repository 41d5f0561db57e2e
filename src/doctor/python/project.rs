//! The Python project a server command runs in, read from disk: its root
//! (the nearest directory with `pyproject.toml`, `setup.cfg`, `setup.py` or
//! `.git`, else with `requirements.txt` or a Dockerfile), its own packages (flat or
//! `src/` layout), the dependencies it declares, the venvs inside it and
//! what they have installed, and its Docker files. Reads files only; runs
//! nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::dockerfile::{self, DockerSetup};

/// How far up from the working directory a project root is looked for.
const MAX_LEVELS: usize = 6;

/// One of the project's own top-level Python packages (or modules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPackage {
    /// The import name (`cc_executor`).
    pub name: String,
    /// The directory that must be on `sys.path` for it to import
    /// (`<root>/src` in a src layout, `<root>` in a flat one).
    pub import_root: PathBuf,
    /// The package directory, or the module file.
    pub path: PathBuf,
}

/// A virtual environment found inside the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectVenv {
    pub dir: PathBuf,
    pub python: PathBuf,
    site_packages: Vec<PathBuf>,
}

impl ProjectVenv {
    /// Whether top-level module `module` (or distribution `dist`) is
    /// installed in it.
    pub fn has(&self, module: &str, dist: &str) -> bool {
        let dist = normalize(dist);
        self.site_packages.iter().any(|site| {
            site.join(module).join("__init__.py").is_file()
                || site.join(format!("{module}.py")).is_file()
                || std::fs::read_dir(site)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.ends_with(".dist-info")
                            && normalize(name.split('-').next().unwrap_or_default()) == dist
                    })
        })
    }
}

/// What was found on disk.
#[derive(Debug, Clone, Default)]
pub struct Project {
    pub root: PathBuf,
    /// `pyproject.toml`, `setup.cfg` or `setup.py`: `pip install -e` works.
    pub installable: Option<PathBuf>,
    pub packages: Vec<LocalPackage>,
    /// Requirements files, relative to the root.
    pub requirements: Vec<PathBuf>,
    /// Normalized distribution names the project declares.
    declared: BTreeSet<String>,
    pub venvs: Vec<ProjectVenv>,
    pub docker: Vec<DockerSetup>,
}

impl Project {
    /// The project around `cwd`: the nearest directory (cwd or above) with
    /// a project marker, else `cwd` itself.
    pub fn discover(cwd: &Path) -> Project {
        let near = |markers: &[&str]| {
            cwd.ancestors()
                .take(MAX_LEVELS)
                .find(|d| markers.iter().any(|m| d.join(m).exists()))
        };
        let root = near(&["pyproject.toml", "setup.cfg", "setup.py", ".git"])
            .or_else(|| near(&["requirements.txt", "Dockerfile"]))
            .unwrap_or(cwd);
        let mut project = Project {
            root: root.to_path_buf(),
            ..Project::default()
        };
        for name in ["pyproject.toml", "setup.cfg", "setup.py"] {
            let file = root.join(name);
            if file.is_file() {
                project.installable.get_or_insert(file.clone());
                if name == "pyproject.toml" {
                    project.declared.extend(pyproject_dependencies(&file));
                }
            }
        }
        project.packages = local_packages(root);
        // The working directory's own packages count too (a project run
        // from a subdirectory without markers of its own).
        if cwd != root {
            for package in local_packages(cwd) {
                if !project.packages.iter().any(|p| p.name == package.name) {
                    project.packages.push(package);
                }
            }
        }
        for file in requirement_files(root) {
            project.declared.extend(requirement_names(&file));
            project
                .requirements
                .push(file.strip_prefix(root).unwrap_or(&file).to_path_buf());
        }
        project.venvs = venvs(root);
        project.docker = dockerfile::find(root);
        project
    }

    /// The project's own package or module named `name`.
    pub fn package(&self, name: &str) -> Option<&LocalPackage> {
        self.packages.iter().find(|p| p.name == name)
    }

    /// Whether the project declares distribution `dist` as a dependency.
    pub fn declares(&self, dist: &str) -> bool {
        self.declared.contains(&normalize(dist))
    }

    /// `path` relative to the root, as `./x/y` (or as it is, outside it).
    pub fn show(&self, path: &Path) -> String {
        match path.strip_prefix(&self.root) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
            Ok(rel) => format!("./{}", rel.display()),
            Err(_) => path.display().to_string(),
        }
    }
}

/// PEP 503 normalization: `Python_Dotenv` → `python-dotenv`.
pub fn normalize(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace(['_', '.'], "-")
}

/// Packages (directories with `__init__.py`) and modules directly in
/// `<dir>` and `<dir>/src`.
fn local_packages(dir: &Path) -> Vec<LocalPackage> {
    let mut found = Vec::new();
    for import_root in [dir.join("src"), dir.to_path_buf()] {
        let Ok(entries) = std::fs::read_dir(&import_root) else {
            continue;
        };
        let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let module = if path.join("__init__.py").is_file() {
                name.to_string()
            } else if let Some(stem) = name.strip_suffix(".py") {
                if matches!(stem, "setup" | "conftest" | "__init__") {
                    continue;
                }
                stem.to_string()
            } else {
                continue;
            };
            if !is_identifier(&module) || found.iter().any(|p: &LocalPackage| p.name == module) {
                continue;
            }
            found.push(LocalPackage {
                name: module,
                import_root: import_root.clone(),
                path,
            });
        }
    }
    found
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `requirements*.txt` in the root, `requirements/`, and the packages'
/// own directories (one level down, where some projects keep them).
fn requirement_files(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_path_buf(), root.join("requirements")];
    for package in local_packages(root) {
        if package.path.is_dir() {
            dirs.push(package.path);
        }
    }
    let mut files = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut here: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("requirements") && n.ends_with(".txt"))
                    || (p.parent().is_some_and(|d| d.ends_with("requirements"))
                        && p.extension().is_some_and(|e| e == "txt"))
            })
            .collect();
        here.sort();
        files.extend(here);
    }
    files
}

/// The distribution names a requirements file lists.
fn requirement_names(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines().filter_map(requirement_name).collect()
}

/// `fastapi>=0.110 ; python_version>"3"` → `fastapi`; options and URLs → none.
fn requirement_name(line: &str) -> Option<String> {
    let line = line.split('#').next()?.trim();
    if line.is_empty() || line.starts_with('-') || line.contains("://") {
        return None;
    }
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(line.len());
    let name = &line[..end];
    (!name.is_empty()).then(|| normalize(name))
}

/// `[project] dependencies` (and optional ones) of a pyproject.toml.
fn pyproject_dependencies(file: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let Some(project) = doc.get("project").and_then(|p| p.as_table()) else {
        return Vec::new();
    };
    let mut specs: Vec<&str> = project
        .get("dependencies")
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    if let Some(optional) = project
        .get("optional-dependencies")
        .and_then(|o| o.as_table())
    {
        for list in optional.values().filter_map(|v| v.as_array()) {
            specs.extend(list.iter().filter_map(|v| v.as_str()));
        }
    }
    specs.into_iter().filter_map(requirement_name).collect()
}

/// Venvs in the root (any directory with a `pyvenv.cfg`).
fn venvs(root: &Path) -> Vec<ProjectVenv> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|d| d.join("pyvenv.cfg").is_file())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let site_packages = std::fs::read_dir(dir.join("lib"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("site-packages"))
                .filter(|p| p.is_dir())
                .collect();
            ProjectVenv {
                python: dir.join("bin/python"),
                dir,
                site_packages,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_lines_give_their_normalized_names() {
        assert_eq!(requirement_name("FastAPI>=0.110"), Some("fastapi".into()));
        assert_eq!(
            requirement_name("python_dotenv==1.0 ; python_version > '3'"),
            Some("python-dotenv".into())
        );
        assert_eq!(
            requirement_name("uvicorn[standard]"),
            Some("uvicorn".into())
        );
        assert_eq!(requirement_name("-r other.txt"), None);
        assert_eq!(requirement_name("# comment"), None);
        assert_eq!(requirement_name("git+https://x/y.git"), None);
    }

    #[test]
    fn a_src_layout_and_a_flat_layout_are_both_found() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src/shop/api")).unwrap();
        std::fs::write(root.join("src/shop/__init__.py"), "").unwrap();
        std::fs::write(
            root.join("pyproject.toml"),
            "[project]\nname='shop'\ndependencies=['Flask>=3']\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("tools")).unwrap();
        std::fs::write(root.join("tools/__init__.py"), "").unwrap();
        std::fs::write(root.join("app.py"), "").unwrap();
        let project = Project::discover(&root.join("src"));
        assert_eq!(project.root, root);
        let names: Vec<&str> = project.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["shop", "app", "tools"]);
        assert_eq!(
            project.package("shop").unwrap().import_root,
            root.join("src")
        );
        assert!(project.declares("flask"));
        assert!(!project.declares("django"));
    }
}
