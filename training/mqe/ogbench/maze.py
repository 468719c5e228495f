"""Maze geometry for OGBench's locomotion mazes: cells, cell <-> xy, BFS shortest paths, the oracle.

Plain numpy; the map, cell size and offsets are read from the environment itself (`Maze.from_env`)
so they can never drift from OGBench's. Conventions (OGBench `locomaze/maze.py`): the map is a grid
of rows i and columns j, 1 = wall, 0 = free; cell (i, j) has its centre at
x = j * unit - offset_x, y = i * unit - offset_y; moves are 4-connected.
"""

from __future__ import annotations

import collections

import numpy as np

# OGBench's neighbour order; the oracle keeps the first neighbour with the strictly smallest
# distance, so ties resolve exactly as in OGBench's `get_oracle_subgoal`.
NEIGHBOUR_STEPS = ((-1, 0), (0, -1), (1, 0), (0, 1))
UNREACHABLE = -1


class Maze:
    def __init__(self, maze_map: np.ndarray, unit: float = 4.0, offset_x: float = 4.0, offset_y: float = 4.0):
        maze_map = np.asarray(maze_map)
        if maze_map.ndim != 2 or not np.isin(maze_map, (0, 1)).all():
            raise ValueError(f"maze map: expected a 2-D grid of 0 (free) and 1 (wall), got shape {maze_map.shape}")
        self.map = maze_map.astype(np.int8)
        self.unit = float(unit)
        self.offset_x = float(offset_x)
        self.offset_y = float(offset_y)
        self.free_cells: list[tuple[int, int]] = [tuple(ij) for ij in np.argwhere(self.map == 0).tolist()]
        self._cell_number = {ij: n for n, ij in enumerate(self.free_cells)}
        # all-pairs shortest paths between free cells: distances[a, b] = BFS steps from cell a to cell b
        self.distances = np.stack([self._bfs_free(ij) for ij in self.free_cells])

    @classmethod
    def from_env(cls, env) -> "Maze":
        """The maze of an OGBench maze environment (wrapped or not)."""
        maze_env = env.unwrapped
        return cls(maze_env.maze_map, maze_env._maze_unit, maze_env._offset_x, maze_env._offset_y)

    # --- geometry ---------------------------------------------------------------------------
    def is_free(self, ij: tuple[int, int]) -> bool:
        i, j = ij
        return 0 <= i < self.map.shape[0] and 0 <= j < self.map.shape[1] and self.map[i, j] == 0

    def ij_to_xy(self, ij: tuple[int, int]) -> np.ndarray:
        i, j = ij
        return np.array([j * self.unit - self.offset_x, i * self.unit - self.offset_y])

    def xy_to_ij(self, xy) -> tuple[int, int]:
        xy = np.asarray(xy, np.float64)
        i = int((xy[1] + self.offset_y + 0.5 * self.unit) // self.unit)
        j = int((xy[0] + self.offset_x + 0.5 * self.unit) // self.unit)
        return i, j

    def xy_to_cell_numbers(self, xy: np.ndarray) -> np.ndarray:
        """Free-cell numbers (rows of `distances`) for positions [N, >=2]; -1 where not in a free cell."""
        xy = np.asarray(xy, np.float64)
        i = np.floor((xy[:, 1] + self.offset_y + 0.5 * self.unit) / self.unit).astype(np.int64)
        j = np.floor((xy[:, 0] + self.offset_x + 0.5 * self.unit) / self.unit).astype(np.int64)
        numbers = np.full(len(xy), -1, np.int64)
        for n, ij in enumerate(zip(i.tolist(), j.tolist())):
            numbers[n] = self._cell_number.get(ij, -1)
        return numbers

    def vertex_cells(self) -> list[tuple[int, int]]:
        """Free cells that are not straight corridor pieces (OGBench's goal cells for `navigate`)."""
        vertices = []
        for i, j in self.free_cells:
            vertical_corridor = self.map[i - 1, j] == 0 and self.map[i + 1, j] == 0 and self.map[i, j - 1] == 1 and self.map[i, j + 1] == 1
            horizontal_corridor = self.map[i, j - 1] == 0 and self.map[i, j + 1] == 0 and self.map[i - 1, j] == 1 and self.map[i + 1, j] == 1
            if not (vertical_corridor or horizontal_corridor):
                vertices.append((i, j))
        return vertices

    # --- shortest paths ---------------------------------------------------------------------
    def _bfs_free(self, source: tuple[int, int]) -> np.ndarray:
        grid = self.bfs(source)
        return np.array([grid[ij] for ij in self.free_cells], np.int64)

    def bfs(self, source: tuple[int, int]) -> np.ndarray:
        """Grid of BFS steps from `source` to every cell; UNREACHABLE (-1) for walls and cut-off cells."""
        if not self.is_free(source):
            raise ValueError(f"BFS: source cell {source} is a wall or outside the maze")
        grid = np.full(self.map.shape, UNREACHABLE, np.int64)
        grid[source] = 0
        queue = collections.deque([source])
        while queue:
            i, j = queue.popleft()
            for di, dj in NEIGHBOUR_STEPS:
                neighbour = (i + di, j + dj)
                if self.is_free(neighbour) and grid[neighbour] == UNREACHABLE:
                    grid[neighbour] = grid[i, j] + 1
                    queue.append(neighbour)
        return grid

    def distance(self, from_ij: tuple[int, int], to_ij: tuple[int, int]) -> int:
        """BFS steps between two free cells (symmetric: moves are reversible)."""
        return int(self.distances[self._cell_number[from_ij], self._cell_number[to_ij]])

    def cells_at_distance(self, from_ij: tuple[int, int], steps: int) -> list[tuple[int, int]]:
        row = self.distances[self._cell_number[from_ij]]
        return [self.free_cells[n] for n in np.nonzero(row == steps)[0]]

    def oracle_next_cell(self, from_ij: tuple[int, int], goal_ij: tuple[int, int]) -> tuple[int, int]:
        """The neighbouring cell with the smallest BFS distance to the goal; the cell itself when none is
        strictly closer (at the goal, or a position outside the free cells)."""
        if not self.is_free(goal_ij):
            raise ValueError(f"oracle: goal cell {goal_ij} is a wall or outside the maze")
        to_goal = self.distances[:, self._cell_number[goal_ij]]
        best = from_ij
        best_distance = to_goal[self._cell_number[from_ij]] if from_ij in self._cell_number else np.inf
        for di, dj in NEIGHBOUR_STEPS:
            neighbour = (from_ij[0] + di, from_ij[1] + dj)
            number = self._cell_number.get(neighbour)
            if number is not None and to_goal[number] != UNREACHABLE and to_goal[number] < best_distance:
                best, best_distance = neighbour, to_goal[number]
        return best

    def expert_direction(self, xy: np.ndarray, goal_xy: np.ndarray) -> np.ndarray:
        """Unit vector from `xy` toward the centre of the oracle's next cell on the way to `goal_xy`
        (OGBench's pointmaze expert before noise); ~0 once in the goal cell's centre."""
        subgoal = self.ij_to_xy(self.oracle_next_cell(self.xy_to_ij(xy), self.xy_to_ij(goal_xy)))
        offset = subgoal - np.asarray(xy[:2], np.float64)
        return offset / (np.linalg.norm(offset) + 1e-6)
